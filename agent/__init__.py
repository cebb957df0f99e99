"""ownrec: an on-device personal recommendation agent.

Layers: `agent.core` (UI-free: store, encoder, ranker, importers, service), `agent.tui` (the
Textual app on top of the core), `agent.server` (the federation coordinator, beside it).
"""

__version__ = "0.1.0"
