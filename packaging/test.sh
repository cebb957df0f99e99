#!/usr/bin/env bash
# Set everything up, check the architecture contracts and pyflakes, and run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OWNREC_VENV:-$ROOT/.venv}"
bash "$ROOT/packaging/bootstrap.sh"
cd "$ROOT"
"$VENV/bin/lint-imports"
"$VENV/bin/ruff" check agent tests
"$VENV/bin/python" -m pytest "$@"
