"""The personal LoRA of the chat LLM (see base.py, train.py, versions.py)."""
