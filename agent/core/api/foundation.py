"""The Agent's part for the public prior ("release 0"): building it on the device, keeping it, using it.

The prior is built from public interactions only (the demo's MovieLens ratings, or a public ratings file
the person points at), never from their own feedback, and kept in the store with its sha256: a damaged one
is refused and the feed falls back to what it had before. Only the `Agent` in `agent.core.api` uses this part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.atomic import write_bytes_atomic

if TYPE_CHECKING:
    from agent.core.ranker import GlobalAdapter
    from agent.core.ranker.co_liked import CoLiked
    from agent.federation.prior import Prior

Progress = Callable[[int, int], None]
PRIORS_KEPT = 2
DEMO_PRIOR_SOURCE = "the public MovieLens-100K ratings"


@dataclass(frozen=True)
class PriorReport:
    """What a prior was built from: shown by `ownrec prior status` and after a build."""

    source: str
    people: int
    interactions: int
    items: int
    catalog_items: int
    outside_catalog: int
    seconds: float
    built_at: float
    problems: tuple[str, ...] = ()
    followed_items: int = 0  # catalog items with something people went on to like after them (agent.core.ranker.co_liked)
    other_encoder: bool = False  # learned on vectors of another text encoder than the one in use

    def summary(self) -> str:
        return (f"release 0 from {self.source}: {self.interactions:,} public interactions of {self.people:,} people "
                f"with {self.items:,} of the catalog's {self.catalog_items:,} items"
                + (f" ({self.outside_catalog:,} more were with items outside the catalog)" if self.outside_catalog else "")
                + f"; built in {self.seconds:.0f} s"
                + (f"; what people went on to like after {self.followed_items:,} of the items, from the same ratings"
                   if self.followed_items else "")
                + (f"; it was learned on another version of the text encoder's vectors: {self._learn_again()} "
                   "learns it again on the current ones" if self.other_encoder else ""))

    def _learn_again(self) -> str:
        if self.source == DEMO_PRIOR_SOURCE:
            return "`ownrec import --demo` (which the quick start runs) or `ownrec prior build`"
        return f"`ownrec prior build` with the same public ratings file ({self.source})"


def _report(header: dict[str, Any], encoder: str, problems: tuple[str, ...] = (), followed_items: int = 0) -> PriorReport:
    # A prior without the key was built before the encoder was recorded: on an earlier encoder's vectors.
    return PriorReport(str(header.get("source", "?")), int(header.get("people", 0)),
                       int(header.get("interactions", 0)), int(header.get("items", 0)),
                       int(header.get("catalog_items", 0)), int(header.get("outside_catalog", 0)),
                       float(header.get("seconds", 0.0)), float(header.get("built_at", 0.0)), problems, followed_items,
                       other_encoder=header.get("encoder") != encoder)


class FoundationPart:
    def build_prior(self, ratings: Path | None = None, progress: Progress | None = None) -> PriorReport:
        """Learn release 0 for the catalog from public interactions: the demo's MovieLens ratings (without
        `ratings`), or a public ratings file (agent.core.importers.public_ratings). It is then what the feed
        ranks with until a federation's release is adopted."""
        from agent.core.importers.public_ratings import demo_public_ratings, read_public_ratings
        from agent.core.sync.prior import build_release_zero, public_co_liked

        problems: tuple[str, ...] = ()
        if ratings is None:
            interactions, source = demo_public_ratings(), DEMO_PRIOR_SOURCE
        else:
            interactions, skipped = read_public_ratings(Path(ratings))
            source = Path(ratings).name
            problems = tuple(str(problem) for problem in skipped)
        catalog = self.catalog()
        prior = build_release_zero(catalog, interactions, source, progress=progress, encoder=self.encoder.model_id)
        co_liked = public_co_liked(catalog, interactions)
        with self._lock:
            self._install_prior(prior, co_liked.to_bytes(catalog.refs))
        return _report(prior.header, self.encoder.model_id, problems, co_liked.followed_items)

    def ensure_demo_prior(self, progress: Progress | None = None, say: Callable[[str], None] | None = None) -> bool:
        """Learn release 0 from the demo's public ratings when there is no prior, or when the one in use is the
        demo's learned on another encoder's vectors (the encoder was rebuilt; saying so through `say`): its
        item rows would be read against vectors they were not learned on. A prior from the person's own public
        ratings file is left alone: only they can point at that file again (`prior status` says so). True
        when it learned one."""
        prior = self.prior()
        if prior is not None and (prior.header.get("source") != DEMO_PRIOR_SOURCE
                                  or prior.header.get("encoder") == self.encoder.model_id):
            return False
        if prior is not None and say:
            say(f"release 0 was learned on another version of the text encoder's vectors: learning it again from "
                f"{DEMO_PRIOR_SOURCE}")
        self.build_prior(progress=progress)
        return True

    def _install_prior(self, prior: "Prior", co_liked: bytes) -> None:
        data = prior.to_bytes()
        self.store.add_prior(data, hashlib.sha256(data).hexdigest(), str(prior.header.get("source", "")), PRIORS_KEPT,
                             co_liked=co_liked, co_liked_sha256=hashlib.sha256(co_liked).hexdigest())
        self._catalog = self._rows = None  # the catalog carries what people went on to like
        self.refresh_global_adapter()

    def _co_liked(self, refs: list[str]) -> "CoLiked | None":
        """What people went on to like, from the newest stored prior that has it whole; a damaged table is
        logged and left out (the feed ranks without it)."""
        from agent.core.ranker.co_liked import CoLiked

        for stored in self.store.priors():
            data = stored.get("co_liked")
            if data is None:
                continue
            try:
                if hashlib.sha256(bytes(data)).hexdigest() != stored.get("co_liked_sha256"):
                    raise ValueError("it does not match its recorded checksum")
                return CoLiked.from_bytes(bytes(data), refs)
            except ValueError as error:
                self.store.log_event("co_liked_rejected", {"version": stored["version"], "error": str(error)})
        return None

    def prior(self) -> "Prior | None":
        """The newest stored prior that is whole (its sha256 as recorded) and fits this encoder; one that
        is not is refused and logged, and the one before it is used."""
        from agent.federation.errors import SyncError
        from agent.federation.prior import Prior

        with self._lock:
            for stored in self.store.priors():
                try:
                    data = bytes(stored["body"])
                    if hashlib.sha256(data).hexdigest() != stored["sha256"]:
                        raise SyncError("it does not match its recorded checksum")
                    prior = Prior.from_bytes(data)
                except SyncError as error:
                    self.store.log_event("prior_rejected", {"version": stored["version"], "error": str(error)})
                    continue
                if prior.layout.dim == self.encoder.dim:
                    return prior
            return None

    def prior_status(self) -> PriorReport | None:
        prior = self.prior()
        if prior is None:
            return None
        co_liked = self.catalog().co_liked
        return _report(prior.header, self.encoder.model_id,
                       followed_items=0 if co_liked is None else co_liked.followed_items)

    def export_prior(self, path: Path) -> Path:
        """Write the prior in use to `path` (for `ownrec coordinator serve --prior`)."""
        prior = self.prior()
        if prior is None:
            raise FileNotFoundError("there is no public prior to export: build one with `ownrec prior build`")
        write_bytes_atomic(Path(path), prior.to_bytes())
        return Path(path)

    def _prior_global_adapter(self) -> "GlobalAdapter | None":
        from agent.core.sync.parameters import unflatten

        prior = self.prior()
        return None if prior is None else unflatten(prior.layout, prior.vector)
