# Shared by scripts/bench-fanout and scripts/bench-idle-memory (sourced): installs the Node
# servers compared against (benches/yjs-server, from npm) and starts a durable PostgreSQL
# cluster (fsync on, as in production) in a temporary directory, exporting BENCH_PG_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/arno/target}
(cd benches/yjs-server && npm ci --no-audit --no-fund --loglevel=error)
# Thousands of connections on each side of the loopback.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

BENCH_WORK=$(mktemp -d /tmp/arno-bench.XXXXXX)
chmod 755 "$BENCH_WORK"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ "$(id -u)" = 0 ]; then run_pg() { runuser -u postgres -- "$@"; }; else run_pg() { "$@"; }; fi
bench_cleanup() {
  if [ -n "$PG_BIN" ] && [ -f "$BENCH_WORK/pg/postmaster.pid" ]; then
    run_pg "$PG_BIN/pg_ctl" -D "$BENCH_WORK/pg" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -rf "$BENCH_WORK"
}
trap bench_cleanup EXIT
if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] && { [ "$(id -u)" != 0 ] || id postgres >/dev/null 2>&1; }; then
  mkdir -p "$BENCH_WORK/pg"
  [ "$(id -u)" = 0 ] && chown postgres "$BENCH_WORK/pg"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  run_pg "$PG_BIN/initdb" -D "$BENCH_WORK/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  run_pg "$PG_BIN/pg_ctl" -D "$BENCH_WORK/pg" -l "$BENCH_WORK/pg/server.log" -w \
    -o "-p $port -k $BENCH_WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  export BENCH_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') (fsync on) for Arno's PostgreSQL runs" >&2
else
  echo "no PostgreSQL here (scripts/test installs it): Arno runs on SQLite only" >&2
fi
