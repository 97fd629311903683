#!/usr/bin/env bash
# A RabbitMQ broker on this machine's loopback interface, for the tests in tests/realendpoint/ (the real
# globus-compute-endpoint daemon talking AMQP to a stand-in for the Globus Compute web service).
#
#   .ci/rabbitmq.sh up       install (Debian package rabbitmq-server, only if missing), start the broker, wait
#                            until it answers, and check that nothing it started listens beyond 127.0.0.1
#   .ci/rabbitmq.sh down     stop the broker and epmd
#   .ci/rabbitmq.sh status   exit 0 if the broker answers
#
# Loopback only: AMQP and epmd listen on 127.0.0.1, and so does the Erlang distribution port (the one
# rabbitmqctl talks to), which otherwise listens on every interface.  AMQP listens on 5672 and also on 443:
# the bundle's templates set `amqp_port: 443` in the endpoint's config.yaml (the port sites leave open), and
# the endpoint rewrites the port of every AMQP URL it is given to it, so an endpoint configured from a
# template unchanged needs the broker there too.  Both serve plain AMQP (no TLS): nothing leaves this machine.
# The broker runs as the package's rabbitmq user, given only the capability to bind ports below 1024.
#
# Needs root and apt-get (Debian/Ubuntu).  Idempotent: running "up" twice is cheap.
set -euo pipefail

AMQP_PORTS="${RABBITMQ_PORTS:-5672 443}"
DIST_PORT="${RABBITMQ_DIST_PORT:-25672}"
BASE=/var/lib/libe-gc-rabbitmq
LOGS=/var/log/libe-gc-rabbitmq
PIDFILE="$BASE/broker.pid"
NODENAME="rabbit@localhost"

log() { echo "rabbitmq.sh: $*" >&2; }

need_root() { if [[ "$(id -u)" != 0 ]]; then log "needs root"; exit 2; fi; }

serialize() {  # one changing command at a time: concurrent test sessions share this broker
  # The lock is held through fd 9; the broker and epmd close it (9>&-), or they would hold it for their life.
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>/run/libe-gc-rabbitmq.lock
  flock -w 300 9 || { log "another .ci/rabbitmq.sh is still changing the broker after 300 s"; exit 1; }
}

install_packages() {
  if ! command -v rabbitmq-server >/dev/null 2>&1 || ! command -v rabbitmqctl >/dev/null 2>&1; then
    log "installing rabbitmq-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's policy-rc.d here blocks the package's own service start; this script starts the broker itself.
    apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
  fi
}

listeners() {  # the Erlang term for the AMQP listeners: [{"127.0.0.1",5672},{"127.0.0.1",443}]
  local port out=""
  for port in $AMQP_PORTS; do out+="{\"127.0.0.1\",${port}},"; done
  echo "[${out%,}]"
}

broker_env() {  # the environment the broker and rabbitmqctl run with
  export RABBITMQ_NODENAME="$NODENAME"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="${AMQP_PORTS%% *}"
  export RABBITMQ_DIST_PORT="$DIST_PORT"
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE="$BASE/mnesia"
  export RABBITMQ_LOG_BASE="$LOGS"
  export RABBITMQ_PID_FILE="$PIDFILE"
  export RABBITMQ_CONFIG_FILE="$BASE/rabbitmq"  # no such file: defaults plus the arguments below
  export RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins"
  local erl_listeners
  erl_listeners="$(listeners)"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} -rabbit tcp_listeners ${erl_listeners}"
}

running() { [[ -s "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

answers() {  # the broker process runs and its node answers (rabbitmqctl takes a few seconds: ask only then)
  running || return 1
  broker_env
  timeout 30 rabbitmqctl -q -n "$NODENAME" status >/dev/null 2>&1
}

wide_listeners() {  # listening sockets of the broker's processes (beam.smp, epmd) that are not on loopback
  ss -ltnpH 2>/dev/null | awk '/"(beam\.smp|epmd|erl_child_setup)"/ && $4 !~ /^(127\.[0-9.]+|\[::1\]):[0-9]+$/ {print}'
}

start_broker() {
  mkdir -p "$BASE/mnesia" "$LOGS"
  [[ -f "$BASE/enabled_plugins" ]] || echo "[]." > "$BASE/enabled_plugins"
  chown -R rabbitmq:rabbitmq "$BASE" "$LOGS"
  broker_env
  log "starting rabbitmq-server (AMQP on 127.0.0.1: ${AMQP_PORTS})"
  # As the rabbitmq user (the package's wrapper would be too, but without the right to bind 443), with the
  # package's Erlang cookie, so that rabbitmqctl (which switches to that user) can talk to it.  Detached from
  # this script's output: a caller reading it through a pipe must not take the broker down with it.
  setsid setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
    --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \
    -- env HOME=/var/lib/rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server \
    </dev/null >>"$LOGS/startup.log" 2>&1 9>&- &
  # Waits for the pid file the broker writes, then until the broker's application has started.
  if timeout 150 rabbitmqctl -q -n "$NODENAME" wait --timeout 120 "$PIDFILE" >/dev/null 2>&1 && answers; then
    return 0
  fi
  log "the broker did not answer within 120 s; see $LOGS"
  tail -n 30 "$LOGS/startup.log" >&2 || true
  return 1
}

stop_broker() {
  broker_env
  if answers; then
    log "stopping the broker"
    rabbitmqctl -q -n "$NODENAME" stop "$PIDFILE" >/dev/null 2>&1 || true
  fi
  if [[ -s "$PIDFILE" ]]; then
    local pid
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
  fi
  if command -v epmd >/dev/null 2>&1 && epmd -names >/dev/null 2>&1; then
    log "stopping epmd"
    epmd -kill >/dev/null 2>&1 || true
  fi
}

case "${1:-up}" in
  up)
    need_root
    if answers; then
      log "already up"
      exit 0
    fi
    serialize
    if answers; then  # another "up" finished while this one waited for the lock
      log "already up"
      exit 0
    fi
    install_packages
    start_broker
    wide="$(wide_listeners)"
    if [[ -n "$wide" ]]; then
      log "the broker listens beyond loopback; stopping it:"
      echo "$wide" >&2
      stop_broker
      exit 1
    fi
    log "broker is ready:"
    ss -ltnpH 2>/dev/null | awk '/"(beam\.smp|epmd)"/ {print "  " $4}' >&2
    ;;
  down)
    need_root
    serialize
    stop_broker
    ;;
  status)
    answers
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
