"""Experiments over the whole system: the on-device model, the client and the coordinator together.

`agent.core.evaluation` holds the protocol (MovieLens-100K, the PFedRec split, HR/NDCG, the baselines)
and stays free of the server; this package sits above both, like the TUI, because its federated rows
run the real coordinator (`agent.server.simulation`) beside the real client code.

- `setting`: the shared set-up: dataset, split, the encoded catalog, every user's local-only personal
  adapter and first-round deltas (computed once, used by `eval` and `audit`).
- `federated`: `ownrec eval`: popularity, centralized MF, ownrec local-only, federated, federated with DP.
- `audit`: `ownrec audit`: an attribute-inference attack on what leaves a device, per view.
- `report`: the EVALUATION.md sections and their PNG plots.
"""
