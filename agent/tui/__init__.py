"""The terminal app (Textual). It sits on top of `agent.core.service.Agent` and talks only to it."""
