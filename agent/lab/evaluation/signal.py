"""What a round's average carries against the noise DP puts in it, part by part (`ownrec eval`'s signal table).

The federation can learn only what stands above the noise in its average. For one round's deltas (every
person's, clipped to C, as uploaded), this measures the coherent part, the plain average, in B_g and in the
item rows, against the Gaussian noise each epsilon puts into that average (the coordinator's own figure,
`NoiseCheck.std`), and what the coordinator's shrinkage (`federation.shrinkage`) leaves of one draw of that
noise: the error of the release against the noise-free average, with and without it, and against publishing
nothing at all (an error of the signal's own norm).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.federation.clipping import DistributedNoise, NoiseCheck, clip_to_norm
from agent.federation.layout import SharedLayout
from agent.federation.neighbourhood import plan_neighbourhood
from agent.federation.shrinkage import shrink_blocks


def signal_and_noise(deltas: Sequence[np.ndarray], layout: SharedLayout, clip_norm: float,
                     noise_multipliers: dict[float, float], seed: int = 0) -> dict:
    """Per epsilon (-> its noise multiplier over the rounds): the noise per number of the average, and per
    part (B_g, items) the signal's norm, the noise's expected norm, the error of the raw and of the shrunk
    average; and the share of item rows whose energy is above their noise's."""
    clipped = np.array([clip_to_norm(np.asarray(d, np.float64), clip_norm)[0] for d in deltas])
    count = len(clipped)
    average = clipped.mean(axis=0)
    adapter_end, residual_start = layout.split_points()
    parts = {"B_g": slice(0, adapter_end), "items": slice(adapter_end, layout.size)}
    k = layout.residual_rank
    rows = np.concatenate([average[adapter_end:residual_start, None],
                           average[residual_start:].reshape(-1, k)], axis=1)
    row_energy = np.einsum("ij,ij->i", rows, rows)
    rng = np.random.default_rng(seed)
    out = {"people": count, "parameters": layout.size,
           "median_norm_before_clipping": float(np.median([np.linalg.norm(d) for d in deltas])),
           "signal_norm": {name: float(np.linalg.norm(average[part])) for name, part in parts.items()},
           "epsilons": []}
    for epsilon, multiplier in sorted(noise_multipliers.items()):
        noise = DistributedNoise(clip_norm, multiplier, plan_neighbourhood(count).min_survivors)
        std = NoiseCheck.of(noise, layout.size, count).std
        noisy = average + rng.normal(0.0, std, layout.size)
        shrunk = shrink_blocks(noisy, layout, std)
        out["epsilons"].append({
            "epsilon": epsilon, "noise_multiplier": multiplier, "noise_std": std,
            "rows_above_noise": float(np.mean(row_energy > (1 + k) * std ** 2)),
            "noise_norm": {name: float(std * np.sqrt(part.stop - part.start)) for name, part in parts.items()},
            "raw_error": {name: float(np.linalg.norm(noisy[part] - average[part])) for name, part in parts.items()},
            "shrunk_error": {name: float(np.linalg.norm(shrunk.vector[part] - average[part]))
                             for name, part in parts.items()},
            "items_factor": shrunk.items_factor, "adapter_factor": shrunk.adapter_factor})
    return out
