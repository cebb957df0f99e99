"""The UI-free core. Nothing in here imports textual (an import-linter contract checks it)."""
