"""The device's side of opt-in federated sync, built on the shared protocol in agent.federation.

    consent     opting in and out, the coordinator pin, the privacy ledger
    parameters  the ranker's global adapter to and from the shared vector; one device's local training
    client      one round against the coordinator over HTTPS, and the stored releases it verifies
    scheduler   when the app runs a round (idle, interval, consent)

With sync off nothing here opens a connection.
"""
