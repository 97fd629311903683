#!/usr/bin/env bash
# A single-node Slurm on this machine, for the tests in tests/slurm/.
#
#   .ci/slurm.sh up      install (Debian packages, only if missing), configure and start
#                        munged, slurmctld and slurmd; wait until the node is idle
#   .ci/slurm.sh down    stop the daemons this script started
#   .ci/slurm.sh status  exit 0 if sinfo shows an idle or allocated node
#
# Needs root and apt-get (Debian/Ubuntu).  Idempotent: running "up" twice is cheap.
set -euo pipefail

HOST="$(hostname -s)"
CPUS="$(nproc)"
CONF_DIR=/etc/slurm
STATE=/var/lib/slurm
LOGS=/var/log/slurm

log() { echo "slurm.sh: $*" >&2; }

node_ready() {
  command -v sinfo >/dev/null 2>&1 || return 1
  local state
  state="$(sinfo --noheader --nodes="$HOST" --format=%t 2>/dev/null | head -n1 | tr -d '*~#')" || return 1
  [[ "$state" == idle || "$state" == alloc || "$state" == mix ]]
}

install_packages() {
  local missing=()
  for cmd in munged slurmctld slurmd sbatch; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  if (( ${#missing[@]} )); then
    log "installing munge and slurm (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null
  fi
}

write_config() {
  mkdir -p "$CONF_DIR" "$STATE/slurmctld" "$STATE/slurmd" "$LOGS" /run/munge /var/log/munge /var/lib/munge
  local conf="$CONF_DIR/slurm.conf"
  local want
  want="$(cat <<CONF
# Written by libe-gc-bundle .ci/slurm.sh: one node, the machine itself.
ClusterName=libegc
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${STATE}/slurmctld
SlurmdSpoolDir=${STATE}/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOGS}/slurmctld.log
SlurmdLogFile=${LOGS}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=pmi2
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
)"
  if [[ ! -f "$conf" ]] || [[ "$(cat "$conf")" != "$want" ]]; then
    printf '%s\n' "$want" > "$conf"
    CONFIG_CHANGED=1
  fi
  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating munge key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 0700 /etc/munge
  chmod 0400 /etc/munge/munge.key
}

running() { pgrep -x "$1" >/dev/null 2>&1; }  # is any such daemon up (ours or the system's)

start_daemons() {
  if ! running munged; then
    log "starting munged"
    if id munge >/dev/null 2>&1; then
      su -s /bin/sh munge -c "munged --force" || munged --force
    else
      munged --force
    fi
  fi
  if [[ "${CONFIG_CHANGED:-0}" == 1 ]]; then
    stop_slurm
  fi
  if ! running slurmctld; then
    log "starting slurmctld"
    slurmctld
  fi
  if ! running slurmd; then
    log "starting slurmd"
    slurmd
  fi
}

stop_slurm() {
  # By the pid files slurm.conf names, so only the daemons this configuration started are stopped.
  for daemon in slurmd slurmctld; do
    local pidfile="/run/${daemon}.pid" pid
    [[ -s "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping $daemon (pid $pid)"
      kill "$pid" || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  done
}

wait_ready() {
  for _ in $(seq 1 60); do
    if node_ready; then
      log "node $HOST is ready: $(sinfo --noheader --format='%P %a %D %t %c')"
      return 0
    fi
    local state
    state="$(sinfo --noheader --nodes="$HOST" --format=%t 2>/dev/null | head -n1 || true)"
    if [[ "$state" == down* || "$state" == drain* ]]; then
      scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 1
  done
  log "Slurm did not become ready within 60 s; see $LOGS/slurmctld.log and $LOGS/slurmd.log"
  tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
  return 1
}

case "${1:-up}" in
  up)
    if [[ "$(id -u)" != 0 ]]; then log "needs root"; exit 2; fi
    if node_ready && [[ -f "$CONF_DIR/slurm.conf" ]] && grep -q 'libe-gc-bundle' "$CONF_DIR/slurm.conf"; then
      log "already up"
      exit 0
    fi
    install_packages
    write_config
    start_daemons
    wait_ready
    ;;
  down)
    stop_slurm
    ;;
  status)
    node_ready
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
