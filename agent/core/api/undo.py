"""The facade's part that takes feedback back (the feed's undo, `ownrec undo`). A part of the facade which
`Agent` (agent.core.api) is built from: the state it uses is the agent's own."""

from __future__ import annotations

import json

from agent.core.ranker import UNJUDGED_KINDS, AdapterError, load_personal
from agent.core.store import Interaction


class UndoPart:
    def undo_feedback(self, interaction_id: int) -> Interaction:
        """Take back one piece of feedback (the feed's undo) and return it. The personal adapter goes back to
        the version saved just before it when that feedback was the last thing to change the adapter, and is
        otherwise retrained from the feedback that remains."""
        self.wait_for_refit()
        with self._lock:
            versions = self.store.adapter_versions("personal")
            removed = self.store.remove_interaction(interaction_id)
            metas = [json.loads(version["meta"]) for version in versions]
            restored, carried = None, {}
            if metas and metas[0].get("interaction") == removed.id:
                # The newest version came from this feedback (or from undoing what came after it): go back to the
                # version before the one this feedback made, or, when that was the first, to a fresh adapter.
                made = next((k for k, meta in enumerate(metas)
                             if meta.get("interaction") == removed.id and meta.get("reason") != "undo"), None)
                try:
                    if made is not None and made + 1 < len(versions):
                        restored = load_personal(self.home.root / versions[made + 1]["path"],
                                                 versions[made + 1]["sha256"])
                        carried = {k: v for k, v in metas[made + 1].items() if k == "interaction"}
                    elif made is not None and versions[made]["version"] == 1:
                        restored = self._fresh_personal()
                except AdapterError:
                    restored = None
            if removed.kind in UNJUDGED_KINDS:
                return removed  # opening or wanting an item never changed the adapter at once
            if restored is not None and restored.dim == self.encoder.dim:
                # Carries the restored version's feedback, so that undoing that feedback next goes back further.
                self._save_personal(restored, "undo", {"undone": removed.id, **carried})
            else:
                self.retrain()
            return removed

