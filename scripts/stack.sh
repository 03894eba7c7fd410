#!/usr/bin/env bash
# Local stand-ins for the AWS side of agentbus: moto server (EventBridge, SQS,
# S3, DynamoDB, Step Functions) and a real Redis server, both on 127.0.0.1.
#   scripts/stack.sh up     install what is missing, start both (idempotent)
#   scripts/stack.sh down   stop what `up` started
#   scripts/stack.sh env    print the environment that points agentbus at them
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
run="$tools/run"
MOTO_VERSION=5.2.5
MOTO_PORT=${MOTO_PORT:-5000}
REDIS_PORT=${REDIS_PORT:-6379}
mkdir -p "$tools" "$run"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_redis() {
  command -v redis-server >/dev/null && return
  echo "stack: installing redis-server from Debian's packages" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null
}

install_moto() {
  local venv="$tools/moto"
  if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "import moto,sys; sys.exit(moto.__version__!='$MOTO_VERSION')" 2>/dev/null; then
    return
  fi
  echo "stack: installing moto[server]==$MOTO_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

wait_for() { # wait_for <what> <command...>
  local what=$1; shift
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "stack: $what did not come up" >&2; return 1
}

redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
moto_up() { curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null; }

up() {
  install_redis
  install_moto
  if ! redis_up; then
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
      --daemonize yes --pidfile "$run/redis.pid" --logfile "$run/redis.log"
    wait_for redis redis_up
  fi
  if ! moto_up; then
    # MOTO_PORT matters: moto's Step Functions integration calls back to localhost:$MOTO_PORT.
    MOTO_PORT=$MOTO_PORT nohup "$tools/moto/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" \
      >"$run/moto.log" 2>&1 &
    echo $! >"$run/moto.pid"
    wait_for moto moto_up
  fi
  # Run Step Functions state machines for real instead of returning canned output.
  curl -sf -X POST "http://127.0.0.1:$MOTO_PORT/moto-api/config" \
    -H 'Content-Type: application/json' \
    -d '{"stepfunctions":{"execute_state_machine":true}}' >/dev/null
  echo "stack: moto on 127.0.0.1:$MOTO_PORT, redis on 127.0.0.1:$REDIS_PORT" >&2
}

down() {
  for p in moto redis; do
    if [ -f "$run/$p.pid" ]; then kill "$(cat "$run/$p.pid")" 2>/dev/null || true; rm -f "$run/$p.pid"; fi
  done
}

env_vars() {
  cat <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AGENTBUS_REDIS_ADDR=127.0.0.1:$REDIS_PORT
ENV
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  env) env_vars ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
