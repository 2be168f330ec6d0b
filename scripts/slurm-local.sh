#!/usr/bin/env bash
# A single-node Slurm cluster on localhost, for the sweep tests and for trying `vtv sweep run
# --executor slurm` without a cluster. Needs root and Debian's slurm-wlm and munge
# (`apt-get install slurm-wlm munge`).
#
#   scripts/slurm-local.sh start [DIR]   configure and start munged, slurmctld and slurmd, wait until
#                                        the node is idle, then print `export SLURM_CONF=...`
#   scripts/slurm-local.sh stop [DIR]    stop the three daemons and remove DIR
#
# Everything (slurm.conf, munge key and socket, state, spool, logs, pid files) lives in DIR (default
# /tmp/vtv-slurm); nothing under /etc is touched, so the machine's own Slurm or munge, if any, is left
# alone. Commands reach this cluster through SLURM_CONF=DIR/slurm.conf. Ports: VTV_SLURM_PORT
# (slurmctld, default 6917) and the next one (slurmd).
set -euo pipefail

cmd=${1:-}
dir=${2:-${VTV_SLURM_DIR:-/tmp/vtv-slurm}}
port=${VTV_SLURM_PORT:-6917}

die() { echo "slurm-local: $*" >&2; exit 1; }

stop_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop() {
  # slurmd first (it ends the job steps it runs), then the controller, then munge.
  stop_pidfile "$dir/slurmd.pid"
  stop_pidfile "$dir/slurmctld.pid"
  stop_pidfile "$dir/munge/munged.pid"
}

start() {
  [ "$(id -u)" = 0 ] || die "must run as root (slurmd starts jobs as their user)"
  for b in munged mungekey slurmctld slurmd sinfo; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "$b not found: apt-get install -y slurm-wlm munge"
  done
  export PATH="$PATH:/usr/sbin"
  stop
  local p
  for p in "$port" $((port + 1)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      die "port $p is in use (another Slurm cluster?): choose others with VTV_SLURM_PORT"
    fi
  done
  rm -rf "$dir"
  mkdir -p "$dir"/{state,spool,munge}
  chmod 700 "$dir/munge"

  # munge: a fresh key in DIR, its own socket, run as root (--force: root is refused otherwise).
  mungekey --create --keyfile="$dir/munge/munge.key" --force
  chmod 400 "$dir/munge/munge.key"
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" ||
    die "munged did not start (see $dir/munge/munged.log)"

  local cpus mem host
  cpus=$(nproc)
  # RealMemory in MiB, a little under the machine's total so slurmd does not drain the node.
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  host=localhost
  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on localhost.
ClusterName=vtvlocal
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
PlugStackConfig=/dev/null
MinJobAge=300
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
Waittime=0
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  # -i: ignore state left by an earlier cluster in DIR (there is none: DIR is fresh).
  slurmctld -i -f "$SLURM_CONF" || die "slurmctld did not start (see $dir/slurmctld.log)"
  slurmd -N "$host" -f "$SLURM_CONF" || die "slurmd did not start (see $dir/slurmd.log)"

  local state=""
  for _ in $(seq 1 60); do
    state=$(sinfo -h -N -n "$host" -o '%T' 2>/dev/null || true)
    [ "$state" = idle ] && break
    kill -0 "$(cat "$dir/slurmctld.pid" 2>/dev/null)" 2>/dev/null || { state="down (slurmctld exited)"; break; }
    kill -0 "$(cat "$dir/slurmd.pid" 2>/dev/null)" 2>/dev/null || { state="down (slurmd exited)"; break; }
    sleep 0.5
  done
  if [ "$state" != idle ]; then
    echo "--- slurmctld.log" >&2; tail -n 20 "$dir/slurmctld.log" >&2 || true
    echo "--- slurmd.log" >&2; tail -n 20 "$dir/slurmd.log" >&2 || true
    stop
    die "node $host is '${state:-unknown}', not idle"
  fi
  echo "export SLURM_CONF=$SLURM_CONF"
}

case "$cmd" in
  start) start ;;
  stop) stop; rm -rf "$dir" ;;
  *) die "usage: $0 start|stop [DIR]" ;;
esac
