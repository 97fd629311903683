#!/usr/bin/env bash
# A multi-node Slurm cluster on this one machine, for the tests in tests/slurm/.
#
#   .ci/slurm.sh up             install (Debian packages, only if missing), configure and start munged,
#                               MariaDB and slurmdbd (accounting), slurmctld and one slurmd per node (n1 ... nK);
#                               wait until every node is idle and accounting answers
#   .ci/slurm.sh down           stop the daemons this script started
#   .ci/slurm.sh status         exit 0 if every node is idle, mixed or allocated and accounting answers (`sacct -X`);
#                               says which of the two does not hold
#   .ci/slurm.sh nodes          print the node names, one per line
#   .ci/slurm.sh stop-node N    take node N away as a node failure would: stop its slurmd, mark it down in
#                               slurmctld, kill the job steps running on it (their slurmstepd and processes)
#   .ci/slurm.sh start-node N   bring node N back: start its slurmd and resume it; wait until it is usable
#
# Every node is this machine (NodeAddr 127.0.0.1, its own slurmd port); node names resolve to 127.0.0.1
# through /etc/hosts, so `mpiexec -hosts n1,n2` and `srun -N 2` work; `$SLURMD_NODENAME` tells which node
# a rank landed on (`hostname` is the same everywhere).  Each node declares SLURM_GPUS_PER_NODE stand-in GPUs
# as Slurm GRES: character devices (Slurm refuses regular files) that nothing reads, so Slurm's GPU binding
# (CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, ZE_AFFINITY_MASK) can be tested without a GPU.
#
# The nodes' MPI environment, as a site's MPI module sets it: the TaskProlog gives every task (batch scripts and
# srun steps) MPICH's OFI netmod over libfabric's tcp provider on loopback, unless the task's environment already
# chooses.  PyPI's MPICH otherwise picks UCX, whose business card is several KB of mostly unpredictable bytes; MPICH
# sends it in PMI-1 "put" lines of up to about 1080 bytes, and Slurm 22.05's pmi2 plugin reads a PMI-1 line with one
# read of at most 1024 bytes, so whenever a segment compresses badly, a rank of an srun step over two or more nodes
# waits in MPI_Init forever (slurmd-<node>.log: "mpi/pmi2: value not properly terminated in client request").  The
# OFI card is under 100 bytes.
#
# Accounting as at the centers: slurmdbd stores jobs in MariaDB, so `sacct` answers, and Parsl's SlurmProvider
# reads job states with sacct (a job ended by a node failure is NODE_FAIL, not a job squeue no longer lists).
# Both listen on loopback only: MariaDB on its Unix socket and no TCP port (--skip-networking); slurmdbd on
# 127.0.0.1:6819.  slurmdbd binds the address its host name resolves to (CommunicationParameters=NoInAddrAny;
# DbdAddr does not choose the listening address), so it runs in a UTS namespace of its own whose host name is
# "localhost".  Where namespaces are refused it uses this machine's host name when that resolves to 127.0.0.1,
# and otherwise listens on every address (the script says so).
#
# Needs root and apt-get (Debian/Ubuntu).  Idempotent: running "up" twice is cheap, and "up" on a cluster an
# older version of this script started adds what is missing (accounting) and restarts slurmctld.
set -euo pipefail

HOST="$(hostname -s)"
NODES="${SLURM_NODES:-3}"
CPUS_PER_NODE="${SLURM_CPUS_PER_NODE:-2}"
GPUS_PER_NODE="${SLURM_GPUS_PER_NODE:-4}"
CONF_DIR=/etc/slurm
STATE=/var/lib/slurm
LOGS=/var/log/slurm
GPU_DIR="$STATE/stand-in-gpus"
TASK_PROLOG="$CONF_DIR/task_prolog.sh"
FIRST_PORT=17001
MARK="libe-gc-bundle multi-node"
CLUSTER=libegc
DB_RUN=/run/mysqld
DB_SOCKET="$DB_RUN/mysqld.sock"
DB_PIDFILE="$DB_RUN/mysqld.pid"
DB_NAME=slurm_acct_db
DBD_PORT=6819
DBD_PIDFILE=/run/slurmdbd.pid

log() { echo "slurm.sh: $*" >&2; }

node_names() { for i in $(seq 1 "$NODES"); do echo "n$i"; done; }

node_state() {  # the state of node $1 as sinfo prints it, without the flag characters
  sinfo --noheader --nodes="$1" --format=%t 2>/dev/null | head -n1 | tr -d '*~#!%$@^-' || true
}

usable() { [[ "$1" == idle || "$1" == alloc || "$1" == mix ]]; }

cluster_ready() {
  command -v sinfo >/dev/null 2>&1 || return 1
  local node
  for node in $(node_names); do
    usable "$(node_state "$node")" || return 1
  done
}

accounting_answers() {  # sacct answers as Parsl's SlurmProvider asks it (accounting storage enabled, slurmdbd up)
  command -v sacct >/dev/null 2>&1 && sacct -X --noheader >/dev/null 2>&1
}

accounting_configured() {
  grep -qx 'AccountingStorageType=accounting_storage/slurmdbd' "$CONF_DIR/slurm.conf" 2>/dev/null
}

install_packages() {
  local missing=()
  for cmd in munged slurmctld slurmd sbatch slurmdbd mariadbd mariadb; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  if (( ${#missing[@]} )); then
    log "installing munge, slurm, slurmdbd and mariadb (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's policy-rc.d in containers keeps the packages' services from starting; this script starts them.
    apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client slurmdbd mariadb-server >/dev/null
  fi
}

write_if_changed() {  # write $2 to file $1; set the variable named $3 (CONFIG_CHANGED by default) when it changed
  if [[ ! -f "$1" ]] || [[ "$(cat "$1")" != "$2" ]]; then
    printf '%s\n' "$2" > "$1"
    printf -v "${3:-CONFIG_CHANGED}" 1
  fi
}

write_hosts() {
  local names
  names="$(node_names | tr '\n' ' ')"
  local line="127.0.0.1 ${names% } # ${MARK}"
  if ! grep -qxF -- "$line" /etc/hosts; then
    # /etc/hosts may be a bind mount: rewrite it in place rather than replacing the file
    local kept
    kept="$(grep -v "# ${MARK}\$" /etc/hosts || true)"
    printf '%s\n%s\n' "$kept" "$line" > /etc/hosts
  fi
}

make_gpus() {
  mkdir -p "$GPU_DIR"
  local i
  for i in $(seq 0 $((GPUS_PER_NODE - 1))); do
    if [[ ! -c "$GPU_DIR/nvidia$i" ]]; then
      rm -f "$GPU_DIR/nvidia$i"
      mknod "$GPU_DIR/nvidia$i" c 1 3  # same numbers as /dev/null
    fi
  done
}

node_layout() {  # the lines of slurm.conf that say which nodes exist (a change needs slurmctld -c)
  grep -E '^(NodeName|PartitionName|GresTypes)=' "$CONF_DIR/slurm.conf" 2>/dev/null || true
}

write_config() {
  mkdir -p "$CONF_DIR" "$STATE/slurmctld" "$LOGS" /run/munge /var/log/munge /var/lib/munge
  local i node_lines="" last=$((GPUS_PER_NODE - 1)) gres_line=""
  for i in $(seq 1 "$NODES"); do
    mkdir -p "$STATE/slurmd-n$i"
    node_lines+="NodeName=n$i NodeHostname=${HOST} NodeAddr=127.0.0.1 Port=$((FIRST_PORT + i - 1)) CPUs=${CPUS_PER_NODE}"
    if (( GPUS_PER_NODE > 0 )); then node_lines+=" Gres=gpu:${GPUS_PER_NODE}"; fi
    node_lines+=$' State=UNKNOWN\n'
  done
  if (( GPUS_PER_NODE > 0 )); then
    gres_line="NodeName=n[1-${NODES}] Name=gpu File=${GPU_DIR}/nvidia[0-${last}]"
  fi
  local layout
  layout="$(node_layout)"
  write_if_changed "$CONF_DIR/slurm.conf" "$(cat <<CONF
# Written by ${MARK} .ci/slurm.sh: ${NODES} nodes, all on this machine.
ClusterName=${CLUSTER}
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${STATE}/slurmctld
SlurmdSpoolDir=${STATE}/slurmd-%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=${LOGS}/slurmctld.log
SlurmdLogFile=${LOGS}/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
GresTypes=gpu
MpiDefault=pmi2
TaskProlog=${TASK_PROLOG}
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=${DBD_PORT}
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
${node_lines%$'\n'}
PartitionName=debug Nodes=n[1-${NODES}] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
)"
  write_if_changed "$CONF_DIR/gres.conf" "$gres_line" LAYOUT_CHANGED
  write_if_changed "$TASK_PROLOG" "$(cat <<'PROLOG'
#!/bin/sh
# Written by .ci/slurm.sh: the MPI environment of this cluster's nodes (why: the comment at the top of .ci/slurm.sh).
# Slurm runs it before every task and sets what it prints as "export NAME=value"; a task that chose keeps its choice.
[ -n "${MPIR_CVAR_CH4_NETMOD:-}" ] || echo "export MPIR_CVAR_CH4_NETMOD=ofi"
[ -n "${FI_PROVIDER:-}" ] || echo "export FI_PROVIDER=tcp"
[ -n "${FI_TCP_IFACE:-}" ] || echo "export FI_TCP_IFACE=lo"
PROLOG
)"
  chmod 0755 "$TASK_PROLOG"
  if [[ "$(node_layout)" != "$layout" ]]; then
    LAYOUT_CHANGED=1
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

dbd_binding() {  # how slurmdbd is kept on loopback: "namespace", "hostname" or "any" (see the header)
  if unshare --uts true 2>/dev/null; then
    echo namespace
  elif [[ "$(getent ahostsv4 "$(hostname)" 2>/dev/null | awk 'NR == 1 {print $1}')" == 127.* ]]; then
    echo hostname
  else
    echo any
  fi
}

write_dbd_config() {
  DBD_BINDING="$(dbd_binding)"
  local comm=""
  if [[ "$DBD_BINDING" != any ]]; then
    comm="CommunicationParameters=NoInAddrAny"
  else
    log "warning: no UTS namespace and $(hostname) does not resolve to 127.0.0.1: slurmdbd listens on every address"
  fi
  # The database is reached over MariaDB's Unix socket as its root user (unix_socket authentication: slurmdbd
  # runs as root), so no password is stored anywhere.
  write_if_changed "$CONF_DIR/slurmdbd.conf" "$(cat <<CONF
# Written by ${MARK} .ci/slurm.sh: Slurm accounting on this machine, loopback only.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=${DBD_PORT}
${comm}
SlurmUser=root
PidFile=${DBD_PIDFILE}
LogFile=${LOGS}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=${DB_NAME}
CONF
)" DBD_CONFIG_CHANGED
  chmod 0600 "$CONF_DIR/slurmdbd.conf"
}

pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {  # stop the daemon whose pid file is $1, waiting up to $2 seconds (default 5) before SIGKILL
  local pidfile="$1" pid
  [[ -s "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $(basename "$pidfile" .pid) (pid $pid)"
    kill "$pid" || true
    for _ in $(seq 1 $(( ${2:-5} * 10 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

db_answers() { mariadb --socket="$DB_SOCKET" -e 'SELECT 1' >/dev/null 2>&1; }

start_database() {
  if ! db_answers; then
    mkdir -p "$DB_RUN" "$LOGS"
    touch "$LOGS/mariadb.log"
    chown mysql:mysql "$DB_RUN" "$LOGS/mariadb.log"
    if [[ ! -d /var/lib/mysql/mysql ]]; then
      log "initializing the MariaDB data directory"
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null 9>&-
    fi
    log "starting mariadbd (Unix socket $DB_SOCKET, no TCP port)"
    # mariadbd stays in the foreground: its own session, so a caller's process group signal does not reach it.
    setsid -f mariadbd --user=mysql --skip-networking --socket="$DB_SOCKET" --pid-file="$DB_PIDFILE" \
      --log-error="$LOGS/mariadb.log" </dev/null >/dev/null 2>&1 9>&-
    for _ in $(seq 1 300); do db_answers && break; sleep 0.1; done
    db_answers || { log "mariadbd did not answer within 30 s; see $LOGS/mariadb.log"; tail -n 20 "$LOGS/mariadb.log" >&2; return 1; }
  fi
  mariadb --socket="$DB_SOCKET" -e "CREATE DATABASE IF NOT EXISTS ${DB_NAME}"
}

dbd_answers() { sacctmgr --noheader --parsable2 list cluster format=cluster >/dev/null 2>&1; }

start_dbd() {
  if [[ "${DBD_CONFIG_CHANGED:-0}" == 1 ]]; then
    stop_pidfile "$DBD_PIDFILE"
  fi
  if ! pid_alive "$DBD_PIDFILE"; then
    log "starting slurmdbd (127.0.0.1:${DBD_PORT}; ${DBD_BINDING})"
    if [[ "$DBD_BINDING" == namespace ]]; then
      unshare --uts sh -c 'hostname localhost && exec slurmdbd' </dev/null >/dev/null 2>&1 9>&-
    else
      slurmdbd </dev/null >/dev/null 2>&1 9>&-
    fi
  fi
  for _ in $(seq 1 300); do dbd_answers && break; sleep 0.1; done
  dbd_answers || { log "slurmdbd did not answer within 30 s; see $LOGS/slurmdbd.log"; tail -n 20 "$LOGS/slurmdbd.log" >&2; return 1; }
  if ! sacctmgr --noheader --parsable2 list cluster format=cluster | grep -qx "$CLUSTER"; then
    log "adding cluster $CLUSTER to the accounting database"
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
}

stop_accounting() {
  stop_pidfile "$DBD_PIDFILE"
  stop_pidfile "$DB_PIDFILE" 60  # mariadbd flushes its tables first
}

node_step_daemons() {  # pids of the slurmstepd processes serving node $1 (by their sockets in its spool dir)
  local dir="$STATE/slurmd-$1/" inodes link fd
  inodes="$(awk -v d="$dir" 'index($8, d) == 1 {print "socket:[" $7 "]"}' /proc/net/unix 2>/dev/null | sort -u)"
  [[ -n "$inodes" ]] || return 0
  for fd in /proc/[0-9]*/fd/*; do
    link="$(readlink "$fd" 2>/dev/null)" || continue
    if [[ "$link" == socket:* ]] && grep -qxF "$link" <<<"$inodes"; then
      fd="${fd#/proc/}"
      echo "${fd%%/*}"
    fi
  done | sort -u
}

serialize() {  # one changing command at a time: concurrent test sessions share this cluster
  # The lock is held through fd 9; every daemon this script starts closes it (9>&-), or the daemon
  # would hold the lock for its whole life and the next stop-node/start-node would wait for it.
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>/run/libe-gc-slurm.lock
  flock -w 300 9 || { log "another .ci/slurm.sh is still changing the cluster after 300 s"; exit 1; }
}

kill_tree() {  # SIGKILL process $1 and all its descendants
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  kill -9 "$1" 2>/dev/null || true
}

start_node() {
  pid_alive "/run/slurmd-$1.pid" && return 0
  log "starting slurmd for node $1"
  # Detached from this script's output: a caller reading it through a pipe must not take slurmd down with it.
  slurmd -N "$1" </dev/null >/dev/null 2>&1 9>&-
}

start_daemons() {
  if ! pgrep -x munged >/dev/null 2>&1; then
    log "starting munged"
    if id munge >/dev/null 2>&1; then
      su -s /bin/sh munge -c "munged --force" 9>&- || munged --force 9>&-
    else
      munged --force 9>&-
    fi
  fi
  if [[ "${CONFIG_CHANGED:-0}" == 1 || "${LAYOUT_CHANGED:-0}" == 1 ]]; then
    stop_slurm
  fi
  # Accounting before slurmctld: it registers with slurmdbd when it starts.
  start_database
  start_dbd
  if ! pid_alive /run/slurmctld.pid; then
    log "starting slurmctld"
    if [[ "${LAYOUT_CHANGED:-0}" == 1 ]]; then
      slurmctld -c 9>&-  # new node layout: forget the old nodes' and jobs' state
    else
      slurmctld 9>&-  # other settings (accounting): jobs that run go on
    fi
  fi
  local node
  for node in $(node_names); do start_node "$node"; done
}

stop_slurm() {
  # By pid file, so only the daemons this configuration started are stopped (also a single-node
  # slurmd from an older configuration of this script).
  local pidfile
  for pidfile in /run/slurmd-*.pid /run/slurmd.pid /run/slurmctld.pid; do
    [[ -e "$pidfile" ]] && stop_pidfile "$pidfile"
  done
  return 0
}

wait_nodes() {  # wait until the nodes named in "$@" are usable
  local node state pending
  for _ in $(seq 1 90); do
    pending=()
    for node in "$@"; do
      state="$(node_state "$node")"
      if ! usable "$state"; then
        pending+=("$node")
        if [[ "$state" == down* || "$state" == drain* || "$state" == drng ]]; then
          scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
        fi
      fi
    done
    if (( ${#pending[@]} == 0 )); then
      return 0
    fi
    sleep 1
  done
  log "nodes ${pending[*]} did not become ready within 90 s; see $LOGS/slurmctld.log and $LOGS/slurmd-*.log"
  sinfo -N >&2 || true
  tail -n 20 "$LOGS/slurmctld.log" >&2 || true
  return 1
}

need_root() { if [[ "$(id -u)" != 0 ]]; then log "needs root"; exit 2; fi; }

case "${1:-up}" in
  up)
    need_root
    if cluster_ready && grep -q "$MARK" "$CONF_DIR/slurm.conf" 2>/dev/null \
        && [[ "$(grep -c '^NodeName=' "$CONF_DIR/slurm.conf")" == "$NODES" ]] \
        && grep -qxF "TaskProlog=${TASK_PROLOG}" "$CONF_DIR/slurm.conf" && [[ -x "$TASK_PROLOG" ]] \
        && accounting_configured && accounting_answers; then
      log "already up"
      exit 0
    fi
    serialize
    install_packages
    write_hosts
    make_gpus
    write_config
    write_dbd_config
    start_daemons
    # shellcheck disable=SC2046
    wait_nodes $(node_names)
    accounting_answers || { log "accounting does not answer: sacct -X failed; see $LOGS/slurmdbd.log"; exit 1; }
    log "cluster is ready, with accounting (sacct -X answers):"
    sinfo -N --format='%N %P %t %c %G' >&2
    ;;
  down)
    need_root
    serialize
    stop_slurm
    stop_accounting
    ;;
  status)
    ready=0
    if cluster_ready; then
      log "nodes: every node is idle, mixed or allocated"
    else
      log "nodes: not every node is usable (sinfo -N shows which)"
      ready=1
    fi
    if accounting_answers; then
      log "accounting: answers (sacct -X)"
    else
      log "accounting: does not answer (sacct -X failed)"
      ready=1
    fi
    exit "$ready"
    ;;
  nodes)
    node_names
    ;;
  stop-node)
    need_root
    serialize
    [[ -n "${2:-}" ]] || { log "usage: $0 stop-node NODE"; exit 2; }
    # As a node failure: its slurmd is gone, Slurm marks it down (and ends the jobs using it with NODE_FAIL,
    # or requeues them), and every job step on it (slurmstepd and the step's processes) is gone.
    # slurmd first: a down node whose slurmd still answers is returned to service (ReturnToService=2).
    stop_pidfile "/run/slurmd-$2.pid"
    scontrol update NodeName="$2" State=DOWN Reason="taken away by slurm.sh stop-node" >/dev/null
    for pid in $(node_step_daemons "$2"); do
      log "killing job step daemon $pid of node $2 and its processes"
      kill_tree "$pid"
    done
    ;;
  start-node)
    need_root
    serialize
    [[ -n "${2:-}" ]] || { log "usage: $0 start-node NODE"; exit 2; }
    start_node "$2"
    scontrol update NodeName="$2" State=RESUME >/dev/null 2>&1 || true
    wait_nodes "$2"
    ;;
  *)
    echo "usage: $0 up|down|status|nodes|stop-node NODE|start-node NODE" >&2
    exit 2
    ;;
esac
