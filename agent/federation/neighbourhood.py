"""Who masks with whom: the SecAgg+ neighbourhood graph and its share threshold.

In the original SecAgg (Bonawitz et al. 2017) every client masks with, and secret-shares to, every
other client: O(n) work and bytes per client. SecAgg+ (Bell et al. 2020) replaces the complete graph
by a sparse random one of degree k = O(log n): each client agrees keys, expands masks and shares its
secrets with its k neighbours only. This module finds k and the Shamir threshold t for a cohort, and
builds the graph every party derives identically from the round's public seed.

The graph is a Harary graph H(k, n) on a pseudorandom ring: participants are placed on a ring in an
order derived from the public seed (ChaCha20 keystream, HKDF-keyed by the seed and the round), and
each is joined to the k/2 nearest positions on either side. When no sparse degree meets the targets
(small cohorts), the complete graph (k = n - 1) is used.

Parameters are chosen with the bounds of SecAgg+ (as Google's open-source SecAgg applies them to
Harary graphs), so that with at most a fraction gamma of clients corrupt
(colluding with the server) and at most a fraction delta dropping out:
- privacy (failure <= 2^-40): the honest survivors stay connected in the graph — removing nodes
  disconnects a ring Harary graph only if two disjoint runs of k/2 consecutive nodes are all removed,
  bounded by a union bound over the n(n-k-1)/2 pairs of runs — and no client has t or more corrupt
  neighbours (who could otherwise pool both of its secrets), a hypergeometric tail per client;
  against a semi-malicious server, which may lie about who dropped, also 2t > k + corrupt neighbours,
  so it can never gather t shares of both secrets of one honest client;
- correctness (failure <= 2^-20): every client keeps at least t surviving neighbours.
Any t in the admissible range meets both targets; the midpoint is used, leaving equal slack for more
colluders and for more dropouts than assumed. The analysis assumes at most floor(delta*n) dropouts:
the round must abort (and clients refuse to unmask) with fewer than `min_survivors` survivors.
The ring order must be unpredictable when corruptions are fixed: the coordinator draws the public
seed with a CSPRNG for each round (a malicious coordinator could grind it; out of this model).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import Enum

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from agent.federation.errors import ConfigurationError, MaskingError
from agent.federation.keys import ROUND_ID_BYTES, hkdf_sha256

DEFAULT_DROPOUT_FRACTION = 0.3
DEFAULT_CORRUPT_FRACTION = 0.05
SECURITY_BITS = 40
CORRECTNESS_BITS = 20
MAX_SPARSE_DEGREE = 4096
PUBLIC_SEED_BYTES = 32
GRAPH_KDF_LABEL = b"ownrec/secagg/v1/neighbour-graph"
# Floating-point slack so that fractions like 0.3 * 20 count as 6, not 5.
_EPSILON = 1e-12


class ThreatModel(Enum):
    CURIOUS_SERVER = "curious-server"                 # follows the protocol, tries to learn from what it sees
    SEMI_MALICIOUS_SERVER = "semi-malicious-server"   # may also lie about which clients dropped


@dataclass(frozen=True)
class NeighbourhoodPlan:
    """The graph degree k and Shamir threshold t for a cohort, and the assumptions they rest on."""

    cohort_size: int
    degree: int
    threshold: int
    max_dropouts: int
    max_corrupt: int
    threat_model: ThreatModel

    @property
    def complete(self) -> bool:
        return self.degree == self.cohort_size - 1

    @property
    def min_survivors(self) -> int:
        """Fewer survivors than this void the privacy analysis: the round must abort."""
        return self.cohort_size - self.max_dropouts

    def check_survivors(self, survivors: int) -> None:
        if survivors < self.min_survivors:
            raise MaskingError(
                f"{survivors} of {self.cohort_size} clients survived, fewer than the {self.min_survivors} the "
                f"privacy analysis assumes: the round must abort without unmasking")


def plan_neighbourhood(cohort_size: int, *, max_dropout_fraction: float = DEFAULT_DROPOUT_FRACTION,
                       max_corrupt_fraction: float = DEFAULT_CORRUPT_FRACTION,
                       threat_model: ThreatModel = ThreatModel.CURIOUS_SERVER,
                       security_bits: float = SECURITY_BITS,
                       correctness_bits: float = CORRECTNESS_BITS) -> NeighbourhoodPlan:
    """The smallest degree k (and a threshold t) that meets the module's privacy and correctness targets."""
    n = cohort_size
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        # With two clients, each learns the other's input from the sum; with t >= 2 shares needed,
        # three is the smallest cohort where a threshold below the neighbourhood size exists.
        raise ConfigurationError(f"a cohort needs at least 3 clients, not {cohort_size!r}")
    for name, value in (("max_dropout_fraction", max_dropout_fraction), ("max_corrupt_fraction", max_corrupt_fraction)):
        if not (math.isfinite(value) and 0 <= value < 1):
            raise ConfigurationError(f"{name} must be in [0, 1), not {value!r}")
    semi_malicious = threat_model is ThreatModel.SEMI_MALICIOUS_SERVER
    if max_corrupt_fraction + max_dropout_fraction * (2 if semi_malicious else 1) > 0.9:
        rule = "corrupt + 2 x dropout" if semi_malicious else "corrupt + dropout"
        raise ConfigurationError(
            f"corrupt fraction {max_corrupt_fraction} with dropout fraction {max_dropout_fraction} is infeasible "
            f"against a {threat_model.value}: {rule} must be at most 0.9")
    corrupt = math.floor(max_corrupt_fraction * n + _EPSILON)
    dropouts = math.floor(max_dropout_fraction * n + _EPSILON)
    survivors = n - dropouts
    privacy_tail = 2.0 ** -(security_bits + 1) / n   # split evenly between the two privacy events
    correctness_tail = 2.0 ** -correctness_bits / n
    sparse = range(2, min(n - 2, MAX_SPARSE_DEGREE) + 1, 2)
    for k in [*sparse, n - 1]:
        complete = k == n - 1
        if not complete and _log_disconnect_probability(n, k, corrupt + dropouts) >= -(security_bits + 1) * math.log(2):
            continue
        # Fewest corrupt neighbours c such that P[more than c] <= privacy_tail.
        corrupt_pmf = _hypergeometric_pmf(n, corrupt, k)
        upper_tail, most_corrupt = 0.0, k
        for c in range(k, -1, -1):
            if upper_tail + corrupt_pmf[c] > privacy_tail:
                most_corrupt = c
                break
            upper_tail += corrupt_pmf[c]
        else:
            most_corrupt = 0
        lowest = most_corrupt + 1
        if semi_malicious:
            lowest = max(lowest, (k + most_corrupt) // 2 + 1)
        # Largest t such that P[fewer than t surviving neighbours] <= correctness_tail.
        survivor_pmf = _hypergeometric_pmf(n, survivors, k)
        lower_tail, highest = 0.0, 0
        for t in range(1, k + 1):
            lower_tail += survivor_pmf[t - 1]
            if lower_tail > correctness_tail:
                break
            highest = t
        lowest = max(lowest, 2)  # t = 1 would hand every neighbour the secret itself
        if lowest <= highest:
            return NeighbourhoodPlan(cohort_size=n, degree=k, threshold=(lowest + highest + 1) // 2,
                                     max_dropouts=dropouts, max_corrupt=corrupt, threat_model=threat_model)
    raise ConfigurationError(
        f"no neighbourhood meets the targets for {n} clients with up to {dropouts} dropouts and {corrupt} corrupt "
        f"clients against a {threat_model.value}; lower the assumed fractions or enlarge the cohort")


def _log_lchoose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _log_disconnect_probability(n: int, k: int, removed: int) -> float:
    """log of a union bound on P[two disjoint runs of k/2 ring positions are all removed]."""
    if k > removed:
        return -math.inf
    pairs = math.log(n) + math.log(max(n - k - 1, 1)) - math.log(2)
    return pairs + _log_lchoose(removed, k) - _log_lchoose(n, k)


def _hypergeometric_pmf(population: int, marked: int, draws: int) -> list[float]:
    """P[X = x] for x = 0..draws: marked items among `draws` drawn without replacement."""
    pmf = [0.0] * (draws + 1)
    low, high = max(0, draws - (population - marked)), min(draws, marked)
    for x in range(low, high + 1):
        pmf[x] = math.exp(_log_lchoose(marked, x) + _log_lchoose(population - marked, draws - x)
                          - _log_lchoose(population, draws))
    return pmf


@dataclass(frozen=True, eq=False)
class NeighbourGraph:
    """The round's graph over participants 1..n: `order[p]` sits at ring position p."""

    plan: NeighbourhoodPlan
    order: np.ndarray
    position: np.ndarray

    @classmethod
    def from_seed(cls, plan: NeighbourhoodPlan, public_seed: bytes, round_id: bytes) -> NeighbourGraph:
        if len(public_seed) != PUBLIC_SEED_BYTES:
            raise ConfigurationError(f"the graph's public seed must be {PUBLIC_SEED_BYTES} bytes")
        if len(round_id) != ROUND_ID_BYTES:
            raise ConfigurationError(f"a round id must be {ROUND_ID_BYTES} bytes")
        n = plan.cohort_size
        key = hkdf_sha256(public_seed, GRAPH_KDF_LABEL + round_id + struct.pack(">II", n, plan.degree))
        stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(8 * n))
        # Sorting by 64-bit pseudorandom keys gives a uniform order up to key collisions (p < n^2/2^65).
        order = np.argsort(np.frombuffer(stream, dtype="<u8"), kind="stable").astype(np.int64) + 1
        position = np.empty(n + 1, dtype=np.int64)
        position[0] = -1
        position[order] = np.arange(n)
        order.setflags(write=False)
        position.setflags(write=False)
        return cls(plan=plan, order=order, position=position)

    def neighbours(self, index: int) -> tuple[int, ...]:
        """The participants `index` masks with and shares to, in increasing order."""
        n = self.plan.cohort_size
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= n:
            raise MaskingError(f"participant {index!r} is not in this cohort of {n}")
        if self.plan.complete:
            return tuple(i for i in range(1, n + 1) if i != index)
        here = int(self.position[index])
        half = self.plan.degree // 2
        offsets = [*range(-half, 0), *range(1, half + 1)]
        return tuple(sorted(int(self.order[(here + offset) % n]) for offset in offsets))
