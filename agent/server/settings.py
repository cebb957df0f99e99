"""The coordinator's settings (`ownrec coordinator serve`'s options): one frozen dataclass, checked when made."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CoordinatorSettings:
    min_cohort: int = 20           # a round forms only with at least this many clients
    max_cohort: int = 20           # ...and forms at once when this many have checked in
    checkin_window: float = 30.0   # after the first check-in, form with >= min_cohort once this passes
    stage_timeout: float = 30.0    # each of the four stages ends after this many seconds
    clip_norm: float = 1.0
    noise_multiplier: float = 1.0
    target_delta: float = 1e-5
    epsilon_budget: float = 10.0   # per device: no device takes part in a round that would take its epsilon above this
    max_dropout_fraction: float = 0.3
    max_corrupt_fraction: float = 0.05
    server_learning_rate: float = 1.0  # global += rate * (cohort average of the deltas)
    # The item biases and residuals take `item_learning_rate` times the server step. Every person's delta
    # carries B_g, but an item's row learns who likes it only from the deltas of the people who rated it,
    # and the cohort average divides that by everyone (a film rated by 50 of 943 people: by 19). A larger
    # rate undoes that, and multiplies the noise those rows take by the same factor, which costs more than
    # it buys under DP (EVALUATION.md, "The item rate"): hence 1 by default.
    item_learning_rate: float = 1.0
    # Publish no average whose Gaussian noise is expected to be larger than C, the most an average of
    # clipped updates can carry: such a release moves every device's global adapter by noise alone.
    withhold_noisy: bool = True
    # Shrink each part of a noised average (B_g; when the federation refines a public prior, all item rows
    # together and each item's row too) against the round's known noise before applying it
    # (`shrinkage.shrink_blocks`): what carries mostly noise is not published as signal.
    shrink_noise: bool = True
    # The device-side privacy floor this coordinator makes room for (`accounting.device_noise`): a device may
    # add enough noise of its own that its epsilon for a round stays within this even if every other member
    # of its cohort were fake. The quantization leaves room for that noise, and the noise figures (what is
    # withheld, what a release says) count it. None: room only for the distributed share.
    max_round_epsilon: float | None = 10.0
    # Admission (`admission`): per client address and per enrolment token, per hour (a burst of as many).
    registrations_per_hour: int = 20
    checkins_per_hour: int = 600  # per token, times the devices it may enrol
    # Release periods (`periods`): the cohorts on one release run, up to this many at once, for at least
    # `release_period` seconds after the first opened, and on while their combined average would be withheld
    # (`withhold_noisy`); then one release combines their sums. 0 s: a release as soon as the cohorts summed
    # can carry it (one cohort, if it can alone).
    max_concurrent_rounds: int = 4
    release_period: float = 0.0
    keep_releases: int = 10  # release bodies kept (the latest first); older ones are deleted


    def __post_init__(self) -> None:
        if not 3 <= self.min_cohort <= self.max_cohort:
            raise ValueError(f"need 3 <= min_cohort ({self.min_cohort}) <= max_cohort ({self.max_cohort})")
        for name in ("checkin_window", "stage_timeout", "clip_norm", "epsilon_budget", "server_learning_rate",
                     "item_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_round_epsilon is not None and not self.max_round_epsilon > 0:
            raise ValueError("max_round_epsilon must be positive")
        if self.registrations_per_hour < 1 or self.checkins_per_hour < 1:
            raise ValueError("the rate limits must allow at least one request an hour")
        if self.max_concurrent_rounds < 1 or self.keep_releases < 1 or not self.release_period >= 0:
            raise ValueError("max_concurrent_rounds and keep_releases must be at least 1, release_period >= 0")
        if self.noise_multiplier < 0 or not 0 < self.target_delta < 1:
            raise ValueError("noise_multiplier must be >= 0 and target_delta in (0, 1)")
