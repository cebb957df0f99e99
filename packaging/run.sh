#!/usr/bin/env bash
# Quick start: set everything up, import the demo catalog, open the terminal app.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OWNREC_VENV:-$ROOT/.venv}"
bash "$ROOT/packaging/bootstrap.sh"
"$VENV/bin/ownrec" import --demo   # idempotent: a second run finds every item already encoded
exec "$VENV/bin/ownrec" "$@"
