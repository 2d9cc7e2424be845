#!/usr/bin/env bash
# Start/stop the local stack: moto (AWS: S3, Kinesis, SQS, ...) and the local Snowflake SQL API v2
# service (local/snowflake_service.py, fakesnow on DuckDB). Idempotent; works from any directory,
# without a terminal or stdin (CI=true).
#
# Usage: local/stack.sh up|down|status|restart
#        local/stack.sh mariadb-up|mariadb-down   (the CDC source database, see below)
#
# Environment (defaults in brackets):
#   MOTO_PORT [4566]            moto server port (127.0.0.1)
#   LOCAL_SF_PORT [8787]        local Snowflake SQL API port (127.0.0.1)
#   VENV [<repo>/.venv]         Python virtual environment holding moto, fakesnow, duckdb
#   RUN_DIR [<repo>/local/.run] pidfiles and logs (moto.pid/.log, snowflake.pid/.log)
#   READY_TIMEOUT [30]          seconds to wait for each service to answer
#   LOCAL_SF_VALIDATE [1]       the service checks every /api/v2 response against the OpenAPI spec
#   LOCAL_SF_ASYNC_AFTER_MS [45000], LOCAL_SF_PARTITION_ROWS [1000], LOCAL_SF_ACCOUNT [LOCALTEST],
#   LOCAL_SF_USER [LOADER], LOCAL_SF_TOKEN [local-dev-token],
#   LOCAL_SF_PUBLIC_KEY_FILE [local/keys/snowflake_test_key.pub],
#   LOCAL_SF_S3_ENDPOINT [127.0.0.1:$MOTO_PORT],
#   LOCAL_SF_STREAMING_COMMIT_DELAY_MS [300-1500] (an accepted streaming append commits after a
#   delay drawn from min-max ms), LOCAL_SF_STREAMING_REQUESTS_PER_SECOND [10],
#   LOCAL_SF_STREAMING_CHANNELS_PER_PIPE [2000],
#   LOCAL_SF_SNOWPIPE_LOAD_DELAY_MS [1000-5000] (a file queued by the Snowpipe REST API's insertFiles
#   loads after a delay drawn from min-max ms), LOCAL_SF_SNOWPIPE_REQUESTS_PER_SECOND [20]
#   passed through to the service.
#   LOCAL_SF_TIMING_MODEL [off]  `snowflake`: the service keeps Snowflake's timing, a labelled model
#   (local/warehouse_timing.py; `make loadtest` sets it); its parameters LOCAL_SF_TIMING_DML_FIXED_MS,
#   _DML_PER_ROW_MS, _INGEST_MS, _APPEND_MS, _REFRESH_FIXED_MS are passed through too.
#   MARIADB_PORT [3307]         MariaDB (Debian's mariadb-server) for the CDC path: its own data
#                               directory $RUN_DIR/mariadb, row-based binary log, 127.0.0.1 only,
#                               user root without a password. `up` starts it too when WITH_MARIADB=1.
# Endpoints: AWS http://127.0.0.1:$MOTO_PORT, Snowflake http://127.0.0.1:$LOCAL_SF_PORT
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
MOTO_PORT="${MOTO_PORT:-4566}"
MARIADB_PORT="${MARIADB_PORT:-3307}"
LOCAL_SF_PORT="${LOCAL_SF_PORT:-8787}"
VENV="${VENV:-$REPO/.venv}"
RUN_DIR="${RUN_DIR:-$HERE/.run}"
READY_TIMEOUT="${READY_TIMEOUT:-30}"
PY="$VENV/bin/python"

log() { echo "stack: $*" >&2; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# read_pid <name>: the pid in the pidfile, or nothing when the pidfile is absent or stale (the pid is
# gone or now belongs to an unrelated process, which must never be signalled)
read_pid() {
  local pid pattern
  pid="$( [ -f "$RUN_DIR/$1.pid" ] && cat "$RUN_DIR/$1.pid" 2>/dev/null || true)"
  case "$1" in moto) pattern="moto_server" ;; snowflake) pattern="snowflake_service.py" ;; mariadb) pattern="mariadbd" ;; esac
  if [ -n "$pid" ] && pid_alive "$pid" && ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$pattern"; then
    pid=""
  fi
  echo "$pid"
}

# answers <url>: true when an HTTP GET succeeds
answers() {
  "$PY" - "$1" <<'EOF' >/dev/null 2>&1
import socket, sys, urllib.parse, urllib.request
url = sys.argv[1]
if url.startswith("mysql://"):
    # MariaDB greets first: a handshake packet means it accepts connections.
    u = urllib.parse.urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=2) as s:
        s.settimeout(2)
        assert len(s.recv(64)) > 4
else:
    urllib.request.urlopen(url, timeout=2).read()
EOF
}

url_of() {
  case "$1" in
    moto) echo "http://127.0.0.1:$MOTO_PORT/moto-api/" ;;
    snowflake) echo "http://127.0.0.1:$LOCAL_SF_PORT/healthz" ;;
    mariadb) echo "mysql://127.0.0.1:$MARIADB_PORT" ;;
  esac
}

start() { # start <name>
  local name="$1" pid url
  pid="$(read_pid "$name")"
  url="$(url_of "$name")"
  if pid_alive "$pid" && answers "$url"; then
    log "$name already up (pid $pid)"
    return 0
  fi
  if pid_alive "$pid"; then
    log "$name pid $pid is alive but not answering; restarting it"
    stop "$name"
  elif answers "$url"; then
    log "$name: something else already answers on $url (not started by this script); refusing to start"
    return 1
  fi
  mkdir -p "$RUN_DIR"
  local logf="$RUN_DIR/$name.log"
  : >"$logf"
  case "$name" in
    moto)
      nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" </dev/null >>"$logf" 2>&1 &
      ;;
    snowflake)
      LOCAL_SF_PORT="$LOCAL_SF_PORT" \
      LOCAL_SF_VALIDATE="${LOCAL_SF_VALIDATE:-1}" \
      LOCAL_SF_S3_ENDPOINT="${LOCAL_SF_S3_ENDPOINT:-127.0.0.1:$MOTO_PORT}" \
      PYTHONUNBUFFERED=1 \
        nohup "$PY" "$HERE/snowflake_service.py" </dev/null >>"$logf" 2>&1 &
      ;;
    mariadb)
      start_mariadb "$logf" || return 1
      ;;
  esac
  pid=$!
  echo "$pid" >"$RUN_DIR/$name.pid"
  local deadline=$((SECONDS + READY_TIMEOUT))
  while ! answers "$url"; do
    if ! pid_alive "$pid" || [ "$SECONDS" -ge "$deadline" ]; then
      log "$name failed to become ready (pid $pid); last lines of $logf:"
      tail -n 30 "$logf" >&2 || true
      stop "$name"
      return 1
    fi
    sleep 0.2
  done
  log "$name up (pid $pid) on $url, log $logf"
}

stop() { # stop <name>
  local name="$1" pid
  pid="$(read_pid "$name")"
  if pid_alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
    if pid_alive "$pid"; then
      log "$name pid $pid did not stop on TERM; sending KILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
    log "$name stopped (pid $pid)"
  else
    if [ -f "$RUN_DIR/$name.pid" ]; then log "$name: stale pidfile removed"; else log "$name not running"; fi
  fi
  rm -f "$RUN_DIR/$name.pid"
}

# The CDC source: a private server, never the machine's own. Row-based binary log with full row
# images and full row metadata (column names in the log), which DMS and Debezium both require:
# https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.MySQL.html
# https://debezium.io/documentation/reference/stable/connectors/mariadb.html
start_mariadb() {
  local logf="$1" datadir="$RUN_DIR/mariadb"
  PATH="/usr/sbin:/usr/bin:$PATH"
  if ! command -v mariadbd >/dev/null; then
    log "mariadbd not found: install Debian's mariadb-server (make mariadb does)"
    return 1
  fi
  if [ ! -d "$datadir/mysql" ]; then
    mkdir -p "$datadir"
    mariadb-install-db --no-defaults --datadir="$datadir" --user="$(id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >>"$logf" 2>&1
  fi
  nohup mariadbd --no-defaults --datadir="$datadir" --user="$(id -un)" \
    --bind-address=127.0.0.1 --port="$MARIADB_PORT" --socket="$datadir/mariadb.sock" \
    --pid-file="$datadir/mariadb.pid" --skip-name-resolve \
    --server-id=1 --log-bin="$datadir/binlog" --binlog-format=ROW --binlog-row-image=FULL \
    --binlog-row-metadata=FULL --character-set-server=utf8mb4 --collation-server=utf8mb4_bin \
    --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 \
    --max-connections=50 </dev/null >>"$logf" 2>&1 &
}

status() {
  local rc=0 name pid
  for name in moto snowflake $( [ "${WITH_MARIADB:-0}" = 1 ] && echo mariadb ); do
    pid="$(read_pid "$name")"
    if pid_alive "$pid" && answers "$(url_of "$name")"; then
      echo "$name: up (pid $pid) $(url_of "$name")"
    else
      echo "$name: down"
      rc=1
    fi
  done
  return $rc
}

if [ ! -x "$PY" ]; then
  log "no virtual environment at $VENV (create it from local/requirements.txt first)"
  exit 1
fi

case "${1:-}" in
  up) start moto && start snowflake && { [ "${WITH_MARIADB:-0}" != 1 ] || start mariadb; } ;;
  down) stop snowflake; stop moto; [ -z "$(read_pid mariadb)" ] || stop mariadb ;;
  mariadb-up) start mariadb ;;
  mariadb-down) stop mariadb ;;
  status) status ;;
  restart) stop snowflake; stop moto; start moto && start snowflake ;;
  *) echo "usage: $0 up|down|status|restart|mariadb-up|mariadb-down" >&2; exit 2 ;;
esac
