"""The coordinating server of opt-in federated sync (`ownrec coordinator serve`).

    state        storage: SQLite by default, PostgreSQL for several workers
    coordinator  cohorts, the four secure-aggregation stages, recovery, accounting, signed releases
    app          the Starlette ASGI app, TLS certificate and keys on disk, `serve`

It imports the shared protocol (agent.federation), never the device's runtime (agent.core).
"""
