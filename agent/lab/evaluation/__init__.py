"""Experiments over the whole system: the on-device model, the client and the coordinator together.

`agent.lab.protocol` holds the protocol (MovieLens-100K, the PFedRec split, HR/NDCG, the baselines)
and stays free of the server; this package sits above both, like the TUI, because its federated rows
run the real coordinator (`agent.lab.evaluation.simulation`) beside the real client code.

- `setting`: the shared set-up: dataset, split, the encoded catalog, every user's local-only personal
  adapter and first-round deltas (computed once, used by `eval` and `audit`).
- `federated`: `ownrec eval`: popularity, centralized MF, ownrec local-only, federated, federated with DP.
- `audit`: `ownrec audit`: an attribute-inference attack on what leaves a device, per view.
- `report`: the EVALUATION.md sections and their PNG plots.
- `simulation`: a federation in one process: the real coordinator and the real client stages.
- `rerank`: `ownrec eval rerank`: does the LLM's judgement reorder the ranker's top for the better.
- `lora`: the rerank evaluation's row with each simulated person's own LoRA.
"""
