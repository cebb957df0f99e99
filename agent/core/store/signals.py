"""What is public about an item (`PublicSignals`): catalog data kept beside it, apart from the person's feedback."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PublicSignals:
    """What is public about an item, as its source says (None where it does not): how many people rated,
    read or watched it, their average rating on the 0.5-5 star scale, and when it came out (unix time).
    Catalog data, never the person's own feedback."""

    popularity: float | None = None
    avg_rating: float | None = None
    published: float | None = None

    def __post_init__(self) -> None:
        for name, low, high in (("popularity", 0.0, math.inf), ("avg_rating", 0.0, 5.0),
                                ("published", -1e11, 1e11)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise ValueError(f"{name} must be a finite number" + (
                    f" from {low:g} to {high:g}" if high != math.inf else f" of at least {low:g}") + f", not {value!r}")
            object.__setattr__(self, name, float(value))

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.popularity, self.avg_rating, self.published))
