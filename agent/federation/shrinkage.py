"""Shrinking the Gaussian noise out of a released average, block by block (positive-part James-Stein).

A DP average is signal plus Gaussian noise whose standard deviation per number, s, is public (the round's
noise multiplier, clip norm and summands fix it). Its blocks differ in how much signal they carry: an item's
row (its bias and residuals) moves only through the people who rated it, so a film few people rated is mostly
noise while a popular one is mostly signal; B_g moves through everyone. Shrinking each block b of d numbers by

    max(0, 1 - c * s^2 / |x_b|^2),   c = d - 2 (James-Stein) for d >= 3, else 1 (the Wiener estimate),

keeps the blocks whose energy stands well above the noise's (d * s^2) and pulls the others to zero, so noise
is not published as if it were what a film's raters taught. The item rows are shrunk at two levels: all of
them as one block first, then each row. When the federation is too small for its noise, no single row stands
out and the coherent part of all rows together is far below the noise of tens of thousands of numbers: the
first level then takes the item part to about zero, where each row's own factor alone would keep a fraction
of every row's noise. It reads only the released average and public figures: post-processing, which costs
no privacy. Without noise (s = 0) it changes nothing.

Shrinking a step to zero keeps the release in use, which is only a good default when that release already
knows something. A federation refining a public prior (release 0) has item rows that carry what the public
ratings taught, and a row's refinement drowned in noise is best left out. A federation from zero has item rows
that carry nothing yet: what a round teaches them is coherent from round to round, so it adds up while the
noise grows only as its square root, but against one round's noise it is too small to keep, and shrinking
each round took the item part to zero every round, so the rows never learned. There only B_g is shrunk
(`item_blocks=False`); EVALUATION.md has both measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.federation.layout import SharedLayout


@dataclass(frozen=True)
class Shrunk:
    """The shrunk average and how much of it was kept: the share of item rows kept at all, the factor of the
    item part as a whole, the mean factor over item rows (both levels) and the factor of B_g."""

    vector: np.ndarray
    items_kept: float
    items_factor: float
    mean_item_factor: float
    adapter_factor: float


def _factors(energy: np.ndarray, size: int, variance: float) -> np.ndarray:
    c = size - 2 if size >= 3 else 1
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = 1.0 - c * variance / energy
    return np.where(energy > 0, np.clip(factor, 0.0, 1.0), 0.0)


def shrink_blocks(average: np.ndarray, layout: SharedLayout, noise_std: float, *, item_blocks: bool = True) -> Shrunk:
    """`average` (in `layout`) with each block shrunk against Gaussian noise of `noise_std` per number: B_g is
    one block, each item's bias and residuals another (left as they are without `item_blocks`)."""
    vector = np.array(average, dtype=np.float64).reshape(-1)
    if vector.shape != (layout.size,):
        raise ValueError(f"the average has {vector.size} numbers; the layout holds {layout.size}")
    count, k = len(layout.refs), layout.residual_rank
    if noise_std <= 0 or not np.isfinite(noise_std):
        return Shrunk(vector, 1.0, 1.0, 1.0, 1.0)
    variance = noise_std ** 2
    adapter_end, residual_start = layout.split_points()
    adapter = vector[:adapter_end]
    adapter_factor = float(_factors(np.array([adapter @ adapter]), adapter.size, variance)[0]) if adapter.size else 1.0
    vector[:adapter_end] *= adapter_factor
    if not item_blocks:
        return Shrunk(vector, 1.0, 1.0, 1.0, adapter_factor)
    biases = vector[adapter_end:residual_start]
    residuals = vector[residual_start:].reshape(count, k)
    energy = biases ** 2 + np.einsum("ij,ij->i", residuals, residuals)
    items_factor = float(_factors(np.array([energy.sum()]), count * (1 + k), variance)[0]) if count else 1.0
    factors = items_factor * _factors(energy, 1 + k, variance)
    vector[adapter_end:residual_start] = biases * factors
    vector[residual_start:] = (residuals * factors[:, None]).reshape(-1)
    return Shrunk(vector, float(np.mean(factors > 0)) if count else 1.0, items_factor,
                  float(np.mean(factors)) if count else 1.0, adapter_factor)


def shrinks_item_blocks(shrink: bool, from_prior: bool) -> bool:
    """Whether a release shrinks the item rows too: only when it shrinks at all and its federation refines a
    public prior (the module's docstring says why)."""
    return shrink and from_prior


def release_step(average: np.ndarray, layout: SharedLayout, noise_std: float, *, server_rate: float,
                 item_rate: float, shrink: bool, item_blocks: bool) -> np.ndarray:
    """How a release moves the shared vector, given a round's average: shrunk against its noise (if `shrink`;
    the item rows too if `item_blocks`), times `server_rate`, and the item part `item_rate` times further.
    Anyone holding the round's sum and the release's figures can recompute a release with it."""
    step = (shrink_blocks(average, layout, noise_std, item_blocks=item_blocks).vector if shrink
            else np.array(average, dtype=np.float64))
    step *= server_rate
    step[layout.item_offset:] *= item_rate
    return step
