"""The lab: everything that measures ownrec rather than runs it for a person.

    protocol     MovieLens-100K read from the installed recbole package, the PFedRec split, HR/NDCG,
                 the popularity and centralized-MF baselines
    people       simulated people, each an `Agent` in a throwaway data directory of its own
    reports      replacing one marked section of a Markdown report
    evaluation   `ownrec eval` (federated rows), `ownrec audit`, the LLM-rerank and personal-LoRA rows
    validation   `ownrec traits validate`; `ownrec eval chat`, scripted chat sessions checked by an independent verifier
    bench        `ownrec bench`: the product's speed and memory targets, the coordinator's rounds

The lab uses the runtime through the same public API as the TUI and the CLI; nothing in the runtime
(agent.core, agent.federation, agent.server, agent.tui) imports it.
"""
