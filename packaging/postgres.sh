#!/usr/bin/env bash
# A throwaway PostgreSQL for the coordinator's tests: installs the server from Debian packages if it is
# missing, starts a cluster as an unprivileged user (postgres refuses to run as root) on a free port
# with its socket under /tmp, creates a database, and prints its URL on the last line of stdout:
#   export OWNREC_TEST_POSTGRES_URL=$(bash packaging/postgres.sh | tail -n 1)
# Stop it with: pg_ctl -D "$dir/data" stop (the directory is printed on stderr).
set -euo pipefail

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    else
        echo "postgresql is not installed and this user cannot apt-get install it" >&2
        exit 1
    fi
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d /tmp/ownrec-postgres.XXXXXX)
chmod 755 "$dir"
run_as=()
if [ "$(id -u)" = 0 ]; then
    id ownrecpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin ownrecpg
    chown ownrecpg "$dir"
    run_as=(runuser -u ownrecpg --)
fi
user=$("${run_as[@]}" id -un)

"${run_as[@]}" "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust -E UTF8 >/dev/null
"${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
"${run_as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$user" ownrec_test
echo "PostgreSQL running in $dir (stop: ${run_as[*]} $bin/pg_ctl -D $dir/data stop)" >&2
echo "postgresql://$user@127.0.0.1:$port/ownrec_test"
