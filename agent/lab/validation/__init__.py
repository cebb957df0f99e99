"""Validations of what the app tells a person: `traits` checks the trait readings and edits on MovieLens."""
