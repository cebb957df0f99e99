#!/usr/bin/env bash
# Set everything up, check the architecture contracts and pyflakes, and run the whole test suite.
# The coordinator's tests also run against a real PostgreSQL: unless OWNREC_TEST_POSTGRES_URL
# names one, a throwaway server is installed from Debian packages (as root) and started for the
# run, then stopped; where that cannot be done, those tests are skipped and say why.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OWNREC_VENV:-$ROOT/.venv}"
bash "$ROOT/packaging/bootstrap.sh"
cd "$ROOT"
if [ -z "${OWNREC_TEST_POSTGRES_URL:-}" ]; then
    PG_LOG="$(mktemp)"
    if OWNREC_TEST_POSTGRES_URL="$(bash packaging/postgres.sh 2>"$PG_LOG" | tail -n 1)" && [ -n "$OWNREC_TEST_POSTGRES_URL" ]; then
        export OWNREC_TEST_POSTGRES_URL
        PG_STOP="$(sed -n 's/.*(stop: \(.*\))$/\1/p' "$PG_LOG" | tail -n 1)"
        trap 'eval "$PG_STOP" -m fast >/dev/null 2>&1 || true' EXIT
        echo "PostgreSQL for the coordinator tests: $OWNREC_TEST_POSTGRES_URL" >&2
    else
        unset OWNREC_TEST_POSTGRES_URL
        echo "no PostgreSQL for the coordinator tests (they will be skipped): $(tail -n 3 "$PG_LOG")" >&2
    fi
fi
"$VENV/bin/lint-imports"
"$VENV/bin/ruff" check agent tests
"$VENV/bin/python" -m pytest "$@"
