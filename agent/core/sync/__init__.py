"""The cryptographic and numeric core of opt-in federated sync: UI-free, network-free, plain data in
and out (bytes, numpy arrays, frozen dataclasses). The round loop, the coordinator and the transport
build on these modules; nothing here opens a connection or touches the store.

    clipping       clip a delta to L2 norm C; distributed-DP Gaussian noise (sigma / sqrt(n) each)
    quantize       floats -> uint32 mod 2^32 with unbiased stochastic rounding and no-wrap headroom
    shamir         t-of-n Shamir sharing of 32-byte secrets over GF(2^256 + 297)
    keys           X25519 key pairs, agreement and HKDF-SHA256 with bound context
    neighbourhood  SecAgg+ neighbourhood graph (Harary on a seeded ring) and the share threshold
    masking        pairwise and self masks (ChaCha20 keystreams), shares to give and reveal, unmasking
    envelope       ChaCha20-Poly1305 envelopes carrying shares to one neighbour, bound to the round
    protocol       the four stages' messages and their strict, versioned binary encoding
    benchmark      one client's time and bytes per round

Each module's docstring states what it protects against whom, and what it does not.
"""
