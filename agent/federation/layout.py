"""The shared parameter vector's layout: which numbers of the global adapter the federation learns, and in
what order. Published by the coordinator inside every signed release; plain arrays and bytes, so the client
and the coordinator read it alike (the client maps it onto its ranker's global adapter: agent.core.sync.parameters).

A layout (`SharedLayout`) fixes:
    A_g       (rank, dim) a fixed projection with orthonormal rows, drawn once by the coordinator and
              never trained (as in LoRA-FA: training A and B together makes small steps of B swing B A)
    W_v       (dim, k) the item residuals' basis, fixed the same way (orthonormal columns; k may be 0)
    refs      the item vocabulary: `source:external_id` refs, in a fixed order (MovieLens-100K by default)
    vector    [ B_g.ravel() (row-major, dim*rank values) | item_bias[refs[0]], ..., item_bias[refs[-1]]
              | v[refs[0]], ..., v[refs[-1]] (k values each) ]
so h_i = x_i + B_g A_g x_i + W_v v_i (+ the personal adapter) and s_ui = p_u . h_i + b_i.
Version 1 layouts have no residuals (k = 0): a rank-16 adapter over the 384-d encoder with the 1,682
MovieLens films is 6,144 + 1,682 = 7,826 numbers. Version 2 adds W_v: with k = 32 another 53,824 (61,650 in
all, 241 KiB at 4 bytes each). Items outside the vocabulary keep bias 0 and no residual.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import numpy as np

from agent.federation.errors import ConfigurationError

LAYOUT_VERSION = 2  # what new layouts are written as; version 1 (no residuals) is still read
SUPPORTED_VERSIONS = (1, 2)


@dataclass(frozen=True, eq=False)
class SharedLayout:
    """What the shared vector means: the fixed projection A_g, the residual basis W_v and the item vocabulary."""

    projection: np.ndarray  # A_g, (rank, dim) float32
    refs: tuple[str, ...]
    residual_basis: np.ndarray | None = None  # W_v^T, (k, dim) float32; None or k = 0: no residuals
    version: int = LAYOUT_VERSION
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.version not in SUPPORTED_VERSIONS:
            raise ConfigurationError(f"shared layout version {self.version} is not supported (this build reads "
                                     f"{', '.join(map(str, SUPPORTED_VERSIONS))})")
        projection = np.ascontiguousarray(self.projection, dtype=np.float32)
        if projection.ndim != 2 or projection.shape[0] < 1 or projection.shape[1] < projection.shape[0]:
            raise ConfigurationError(f"the projection must be (rank, dim) with rank <= dim, not {projection.shape}")
        basis = np.zeros((0, projection.shape[1]), np.float32) if self.residual_basis is None else \
            np.ascontiguousarray(self.residual_basis, dtype=np.float32)
        if basis.ndim != 2 or basis.shape[1] != projection.shape[1] or basis.shape[0] > basis.shape[1]:
            raise ConfigurationError(f"the residual basis must be (k, {projection.shape[1]}) with k <= "
                                     f"{projection.shape[1]}, not {basis.shape}")
        if self.version == 1 and basis.shape[0]:
            raise ConfigurationError("a version 1 layout has no item residuals")
        if len(set(self.refs)) != len(self.refs):
            raise ConfigurationError("the item vocabulary lists a ref twice")
        projection.setflags(write=False)
        basis.setflags(write=False)
        object.__setattr__(self, "projection", projection)
        object.__setattr__(self, "residual_basis", basis)
        object.__setattr__(self, "refs", tuple(self.refs))
        object.__setattr__(self, "_index", {ref: i for i, ref in enumerate(self.refs)})

    @classmethod
    def create(cls, dim: int, rank: int, refs: list[str] | tuple[str, ...],
               rng: np.random.Generator | None = None, residual_rank: int = 0) -> SharedLayout:
        """A new layout with random orthonormal A_g and W_v (the coordinator does this once)."""
        generator = rng if rng is not None else np.random.default_rng()
        basis, _ = np.linalg.qr(generator.standard_normal((dim, rank)))
        residual = None
        if residual_rank:
            residual, _ = np.linalg.qr(generator.standard_normal((dim, residual_rank)))
            residual = residual.T.astype(np.float32)
        return cls(projection=basis.T.astype(np.float32), refs=tuple(refs), residual_basis=residual)

    @property
    def rank(self) -> int:
        return int(self.projection.shape[0])

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])

    @property
    def residual_rank(self) -> int:
        """k: the length of each item's residual v_i (0: no residuals)."""
        return int(self.residual_basis.shape[0])

    @property
    def size(self) -> int:
        """The number of shared parameters."""
        return self.dim * self.rank + len(self.refs) * (1 + self.residual_rank)

    def index_of(self, ref: str) -> int | None:
        return self._index.get(ref)

    def to_bytes(self) -> bytes:
        """version u16 | dim u32 | rank u32 | count u32 | (version 2: k u32) | A_g float32 LE
        | (version 2: W_v^T (k, dim) float32 LE) | refs, newline-separated UTF-8."""
        for ref in self.refs:
            if "\n" in ref:
                raise ConfigurationError(f"an item ref may not contain a newline: {ref!r}")
        head = struct.pack(">HIII", self.version, self.dim, self.rank, len(self.refs))
        if self.version >= 2:
            head += struct.pack(">I", self.residual_rank)
        return (head + self.projection.astype("<f4").tobytes()
                + (self.residual_basis.astype("<f4").tobytes() if self.version >= 2 else b"")
                + "\n".join(self.refs).encode())

    @classmethod
    def from_bytes(cls, data: bytes) -> SharedLayout:
        head = struct.calcsize(">HIII")
        if len(data) < head:
            raise ConfigurationError("a shared layout is truncated")
        version, dim, rank, count = struct.unpack_from(">HIII", data)
        if version not in SUPPORTED_VERSIONS:
            raise ConfigurationError(f"shared layout version {version} is not supported (this build reads "
                                     f"{', '.join(map(str, SUPPORTED_VERSIONS))})")
        k = 0
        if version >= 2:
            if len(data) < head + 4:
                raise ConfigurationError("a shared layout is truncated")
            (k,) = struct.unpack_from(">I", data, head)
            head += 4
        if k > dim:
            raise ConfigurationError(f"a shared layout's residual basis has {k} rows for a {dim}-d encoder")
        matrix_end = head + 4 * dim * rank
        basis_end = matrix_end + 4 * dim * k
        if len(data) < basis_end:
            raise ConfigurationError("a shared layout's projection is truncated")
        projection = np.frombuffer(data, dtype="<f4", count=dim * rank, offset=head).reshape(rank, dim)
        basis = np.frombuffer(data, dtype="<f4", count=dim * k, offset=matrix_end).reshape(k, dim)
        text = data[basis_end:].decode()
        refs = tuple(text.split("\n")) if text else ()
        if len(refs) != count:
            raise ConfigurationError(f"a shared layout says {count} refs and holds {len(refs)}")
        return cls(projection=projection, refs=refs, residual_basis=basis, version=version)

    def digest(self) -> str:
        """sha256 of the layout: clients and coordinator check they mean the same vector. Computed once: the
        coordinator states it in every /v1/info and round, and a layout does not change."""
        if "_digest" not in self.__dict__:
            object.__setattr__(self, "_digest", hashlib.sha256(self.to_bytes()).hexdigest())
        return self.__dict__["_digest"]

    @property
    def item_offset(self) -> int:
        """Where the per-item values (biases, then residuals) start in the vector: B_g comes before."""
        return self.dim * self.rank

    def split_points(self) -> tuple[int, int]:
        """Where the biases start and where the residuals start in the vector."""
        return self.item_offset, self.item_offset + len(self.refs)

    def zeros(self) -> np.ndarray:
        return np.zeros(self.size, dtype=np.float64)
