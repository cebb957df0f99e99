"""The federation protocol that the device's sync client and the coordinating server share: UI-free,
network-free, store-free, plain data in and out (bytes, numpy arrays, frozen dataclasses). Nothing here
imports agent.core or agent.server; both import it.

    layout         which numbers of the global adapter are shared, in what order (signed into releases)
    clipping       clip a delta to L2 norm C; distributed-DP Gaussian noise (sigma / sqrt(n) each)
    quantize       floats -> uint32 mod 2^32 with unbiased stochastic rounding and no-wrap headroom
    shamir         t-of-n Shamir sharing of 32-byte secrets over GF(2^256 + 297)
    keys           X25519 key pairs, agreement and HKDF-SHA256 with bound context
    neighbourhood  SecAgg+ neighbourhood graph (Harary on a seeded ring) and the share threshold
    masking        pairwise and self masks (ChaCha20 keystreams), shares to give and reveal, unmasking
    envelope       ChaCha20-Poly1305 envelopes carrying shares to one neighbour, bound to the round
    protocol       the four stages' messages and their strict, versioned binary encoding
    stages         one client's side of the four stages, as a state machine over those messages
    signing        Ed25519 signed releases and signed requests
    accounting     the privacy spent by released rounds (dp-accounting's Gaussian privacy loss)
    errors         the errors all of the above raise

Each module's docstring states what it protects against whom, and what it does not.
"""
