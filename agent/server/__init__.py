"""The coordinating server of opt-in federated sync (`ownrec coordinator serve`).

    state        storage: SQLite by default, PostgreSQL for several workers
    coordinator  cohorts, the four secure-aggregation stages, recovery, accounting, signed releases
    app          the Starlette ASGI app, TLS certificate and keys on disk, `serve`
    bench        one round with N simulated clients on loopback: time, CPU, memory, bytes

Clients and server share only `agent.core.sync`; the core never imports this package.
"""
