"""The terminal app (Textual). It sits on top of `agent.core.api.Agent` and talks only to it."""
