"""The facade's part for opt-in federated sync (agent.core.sync): consent, the pin, the ledger, the
scheduler, the adoption check and the verified global adapter in use; a part of the facade which `Agent`
(agent.core.api) is built from: the state it uses (`store`, `config`, `home`, `_lock`, the ranker's state) is
the agent's own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.core.ranker import UNJUDGED_KINDS, GlobalAdapter
from agent.core.sync.consent import LedgerRow, PrivacyTotal, SyncEvent, SyncStatus
from agent.core.sync.scheduler import TICK_SECONDS, RoundReport, SyncScheduler

if TYPE_CHECKING:
    from agent.core.sync.adoption import Decision
    from agent.core.sync.client import ClientPolicy, CoordinatorPin, LocalTrainingData


class SyncPart:
    def _verified_global_adapter(self) -> GlobalAdapter | None:
        """The adopted version (agent.core.sync.adoption), recomputed from stored releases that verify against
        the pinned key; None for the identity."""
        from agent.core.sync import adoption, consent
        from agent.core.sync.parameters import unflatten
        from agent.federation.errors import SyncError

        if not consent.was_ever_enabled(self.store):
            return None  # without consent, nothing the federation published is used (or exists here)
        try:
            pin = consent.stored_pin(self.home)
        except consent.SyncSetupError as error:
            self.store.log_event("global_adapter_refused", {"problem": str(error)})
            return None
        if pin is None:
            return None

        def refused(version: int, problem: str) -> None:
            self.store.log_event("global_adapter_refused", {"version": version, "problem": problem})

        loaded = adoption.load_in_use(self.store, pin, self.prior(), refused)
        if loaded is None:
            return None
        _, release, vector = loaded
        if release.layout.dim != self.encoder.dim:
            refused(release.version, f"the release is for a {release.layout.dim}-d encoder, this one is "
                                     f"{self.encoder.dim}-d")
            return None
        try:
            return unflatten(release.layout, vector)
        except SyncError as error:  # signed, yet not a usable adapter (NaN values): refuse it too
            refused(release.version, str(error))
            return None

    def check_new_release(self) -> "Decision | None":
        """Decide on the newest verified release not yet decided on (agent.core.sync.adoption): adopt it, a
        blend of it, or keep the version in use, and log why; the feed then uses what is adopted. None when
        there is nothing new to decide."""
        from agent.core.sync import adoption, consent
        from agent.core.sync.client import latest_verified_release

        with self._lock:
            if not consent.was_ever_enabled(self.store):
                return None
            try:
                pin = consent.stored_pin(self.home)
            except consent.SyncSetupError:
                return None
            if pin is None:
                return None
            key = pin.signing_public_key.hex()
            current = adoption.in_use(self.store, key)
            newest = self.store.newest_release_version(key)
            if newest is None or newest <= current.decided:
                return None
            release = latest_verified_release(self.store, pin)
            if release is None or release.version <= current.decided or release.layout.dim != self.encoder.dim:
                return None
            prior = self.prior()
            loaded = adoption.load_in_use(self.store, pin, prior, lambda version, problem: None)
            state = adoption.current_for(release, current, loaded, prior, self.global_adapter())
            interactions = self.store.interactions()
            person = adoption.Person(self.catalog(), self.personal_adapter(), interactions,
                                     {e.item_id for e in interactions if e.kind not in UNJUDGED_KINDS}
                                     | self.store.judged_item_ids())
        # The refit and the scoring run outside the lock: the feed is not held up by them.
        decision = adoption.decide(person, state, release)
        with self._lock:
            if adoption.in_use(self.store, key) != current:
                return None  # decided meanwhile (another process)
            adoption.record(self.store, state.in_use, decision)
            if decision.t > 0:
                self.refresh_global_adapter()
        return decision

    def sync_status(self) -> SyncStatus:
        """Whether sync is on (and was ever asked), the pinned coordinator, the privacy spent with it and the
        shared adapter in use."""
        from agent.core.sync import consent

        return consent.status(self.store, self.home,
                              "release 0, the public prior" if self.prior() is not None else "the identity")

    def sync_enabled(self) -> bool:
        from agent.core.sync import consent

        return consent.is_enabled(self.store)

    def set_sync(self, on: bool, origin: str) -> bool:
        """Record the person's answer to taking part (`origin`: onboarding, tui, cli); whether it changed.
        A running scheduler sees it at its next tick, and cancels a round in flight when it is off."""
        from agent.core.sync import consent

        return consent.set_enabled(self.store, on, origin)

    def join_sync(self, pin_file: Path, token: str | None = None) -> "CoordinatorPin":
        """Pin the coordinator `pin_file` describes (checked, then copied into the data folder, replacing
        any earlier pin), with the enrolment code `token` from its operator; SyncSetupError when either cannot
        be used. Joining alone sends nothing; it clears what stopped rounds with the earlier pin."""
        from agent.core.sync import consent

        pin = consent.join(self.home, pin_file, token)
        consent.clear_blocked(self.store)
        return pin

    def sync_policy(self) -> "ClientPolicy":
        """This device's rules for taking part in a round, from the sync.* settings."""
        from agent.core.sync.client import ClientPolicy

        return ClientPolicy(min_cohort=int(self.config.get("sync.min_cohort")),
                            max_round_epsilon=float(self.config.get("sync.max_round_epsilon")))

    def sync_pin(self) -> "CoordinatorPin | None":
        """The pinned coordinator, or None (SyncSetupError when the pin file is damaged)."""
        from agent.core.sync import consent

        return consent.stored_pin(self.home)

    def sync_log(self, limit: int | None = 20) -> list[LedgerRow]:
        """The uploads, newest first (every coordinator; each row names its key)."""
        from agent.core.sync import consent

        return consent.ledger(self.store, limit)

    def sync_events(self, limit: int | None = 20) -> list[SyncEvent]:
        """What happened to rounds and releases, newest first: rounds that ended without a release, and every
        adoption decision with its figures."""
        from agent.core.sync import consent

        return consent.events(self.store, limit)

    def sync_privacy(self, coordinator_key: str) -> PrivacyTotal:
        """The privacy spent with one coordinator (its hex key) over the released rounds this device took
        part in."""
        from agent.core.sync import consent

        return consent.privacy_total(self.store, coordinator_key)

    def sync_release_count(self) -> int:
        """How many verified releases are kept: one more means a new shared adapter."""
        return self.store.release_count()

    def sync_scheduler(self, *, policy: "ClientPolicy | None" = None, tick_seconds: float = TICK_SECONDS,
                       on_round_end: Callable[[RoundReport], None] | None = None,
                       in_app: bool = True) -> SyncScheduler:
        """Federated rounds in the background while sync is on and the app is idle (not started: `start()`;
        stop it before closing the agent), or headless (`in_app` False: `run_once`, waiting for the app's
        idleness as kept in the store). After each round a new release is checked (`check_new_release`)
        before the feed uses it."""
        return SyncScheduler(self.store, self.home, self._sync_training_data,
                             idle_seconds=float(self.config.get("sync.idle_seconds")),
                             interval_minutes=float(self.config.get("sync.interval_minutes")),
                             check_releases=self.check_new_release, policy=policy or self.sync_policy(),
                             tick_seconds=tick_seconds, on_round_end=on_round_end, in_app=in_app)

    def _sync_training_data(self) -> "LocalTrainingData":
        """What a round trains on: the encoded catalog, the personal adapter (fixed) and the labels, without
        the latest likes the adoption check holds out (`adoption.upload_labels`)."""
        from agent.core.sync.adoption import upload_labels
        from agent.core.sync.client import LocalTrainingData

        with self._lock:
            return LocalTrainingData(catalog=self.catalog(), personal=self.personal_adapter(),
                                     labels=upload_labels(self.store.interactions()))
