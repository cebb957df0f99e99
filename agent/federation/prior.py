"""A public prior on disk: "release 0" of the shared vector, learned from public interaction data.

A device builds one for its catalog (agent.core.sync.prior) and ranks with it while sync is off; a
coordinator started with the same file (`ownrec coordinator serve --prior`) publishes it as its first
release, so a federation refines it instead of learning from zero. It carries its own layout (A_g, W_v
and the item vocabulary: agent.federation.layout), because the vector means nothing without it.

    MAGIC | u32 length | header (JSON, UTF-8) | u32 length | layout bytes | vector (float32 LE, layout.size)

The header says what the prior was built from (the data's name, how many people, interactions and
items) and when; nothing in it is about any one person.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.federation.errors import ConfigurationError
from agent.federation.layout import SharedLayout

MAGIC = b"OWNREC-PRIOR-1\n"
MAX_HEADER = 1 << 20


@dataclass(frozen=True, eq=False)
class Prior:
    layout: SharedLayout
    vector: np.ndarray  # (layout.size,) float64
    header: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        vector = np.asarray(self.vector, np.float64).reshape(-1)
        if vector.size != self.layout.size:
            raise ConfigurationError(f"a prior of this layout has {self.layout.size} values, not {vector.size}")
        if not np.all(np.isfinite(vector)):
            raise ConfigurationError("the prior holds NaN or infinite values")
        object.__setattr__(self, "vector", vector)

    def to_bytes(self) -> bytes:
        header = json.dumps(self.header, sort_keys=True).encode()
        layout = self.layout.to_bytes()
        return (MAGIC + struct.pack(">I", len(header)) + header + struct.pack(">I", len(layout)) + layout
                + self.vector.astype("<f4").tobytes())

    def digest(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Prior":
        if not data.startswith(MAGIC):
            raise ConfigurationError("not an ownrec prior (it does not start with the prior's magic line)")
        offset = len(MAGIC)
        try:
            (length,) = struct.unpack_from(">I", data, offset)
            if length > MAX_HEADER:
                raise ConfigurationError("a prior's header is implausibly long")
            header = json.loads(data[offset + 4: offset + 4 + length].decode())
            offset += 4 + length
            (length,) = struct.unpack_from(">I", data, offset)
            layout = SharedLayout.from_bytes(data[offset + 4: offset + 4 + length])
            offset += 4 + length
        except (struct.error, UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigurationError("a prior is truncated or damaged") from None
        if not isinstance(header, dict):
            raise ConfigurationError("a prior's header is not a JSON object")
        if len(data) - offset != 4 * layout.size:
            raise ConfigurationError(f"a prior's vector has {(len(data) - offset) / 4:g} values; its layout needs "
                                     f"{layout.size}")
        vector = np.frombuffer(data, dtype="<f4", count=layout.size, offset=offset).astype(np.float64)
        return cls(layout, vector, header)
