#!/usr/bin/env bash
# A single-node Slurm cluster on localhost with 2 fake GPUs, for daskhpo's Slurm tests.
#
#   .ci/slurm-local.sh install   apt-get the Debian packages (slurmctld slurmd slurm-client munge)
#   .ci/slurm-local.sh start     write the config, start munged + slurmctld + slurmd, wait for "idle"
#   .ci/slurm-local.sh stop      cancel every job, wait for an empty queue, stop the daemons
#   .ci/slurm-local.sh status    exit 0 if the controller answers and the node is up
#
# Needs root (daemons, /etc/slurm, mknod).  No systemd: daemons are started by hand.  Every
# start wipes the state directory, so job ids restart at 1 and no stale DRAIN state survives.
# Environment: SLURM_LOCAL_GPUS (default 2) fake GPUs; SLURM_LOCAL_AUTH=munge|none (default munge).
set -euo pipefail

GPUS=${SLURM_LOCAL_GPUS:-2}
AUTH=${SLURM_LOCAL_AUTH:-munge}
CONF_DIR=/etc/slurm
STATE=/var/spool/slurm-local
RUN=/run/slurm-local
LOGS=/var/log/slurm-local
FAKEGPU=/var/lib/slurm-local/fakegpu

log() { echo "slurm-local: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (daemons, /etc/slurm, device files)"; }

# wait_for SECONDS COMMAND...: retry COMMAND every 0.1 s until it succeeds or time runs out
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

cmd_install() {
  need_root
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null; then
    log "already installed ($(slurmctld -V))"
    return
  fi
  apt-get update -qq
  # Postinst scripts try to start the services; without systemd that is refused, which is fine.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge
  log "installed $(slurmctld -V)"
}

write_config() {
  local host node_line
  host=$(hostname -s)
  # CPUs/memory exactly as slurmd sees them, else the node is drained.
  node_line=$(slurmd -C | head -1)
  [[ $node_line == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node_line"
  mkdir -p "$CONF_DIR" "$FAKEGPU"
  local auth=auth/munge cred=cred/munge
  if [ "$AUTH" = none ]; then auth=auth/none; cred=cred/none; fi
  cat > "$CONF_DIR/slurm.conf" <<CONF
# written by daskhpo's .ci/slurm-local.sh: single node, fake GPUs, for tests
ClusterName=localtest
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=${auth}
CredType=${cred}
StateSaveLocation=${STATE}/ctld
SlurmdSpoolDir=${STATE}/d
SlurmctldPidFile=${RUN}/slurmctld.pid
SlurmdPidFile=${RUN}/slurmd.pid
SlurmctldLogFile=${LOGS}/slurmctld.log
SlurmdLogFile=${LOGS}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
ReturnToService=2
MailProg=/bin/true
KillWait=5
SlurmdTimeout=30
InactiveLimit=0
GresTypes=gpu
${node_line} NodeAddr=127.0.0.1 Gres=gpu:${GPUS} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  # gres/gpu needs device files (a count-only gpu GRES is dropped and the node drained):
  # character devices that are really /dev/null, or symlinks to it where mknod is refused.
  rm -f "$FAKEGPU"/gpu*
  local i
  for ((i = 0; i < GPUS; i++)); do
    mknod -m 666 "$FAKEGPU/gpu$i" c 1 3 2>/dev/null || ln -s /dev/null "$FAKEGPU/gpu$i"
  done
  cat > "$CONF_DIR/gres.conf" <<CONF
AutoDetect=off
Name=gpu File=${FAKEGPU}/gpu[0-$((GPUS - 1))]
CONF
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

cmd_start() {
  need_root
  command -v slurmctld >/dev/null || die "Slurm is not installed: run '$0 install' first"
  if pid_alive "$RUN/slurmctld.pid" || pid_alive "$RUN/slurmd.pid"; then
    log "already running: stopping first"
    cmd_stop
  fi
  write_config
  mkdir -p "$LOGS"
  if [ "$AUTH" = munge ]; then
    if ! pid_alive /run/munge/munged.pid; then
      mkdir -p /run/munge && chown munge:munge /run/munge
      [ -f /etc/munge/munge.key ] || die "/etc/munge/munge.key is missing (munge postinst creates it)"
      # munged refuses to run as root.  Daemons get no stdio of ours: a caller reading our
      # output through a pipe would otherwise wait for them forever.
      runuser -u munge -- /usr/sbin/munged </dev/null >>"$LOGS/munged.stdout" 2>&1
    fi
    wait_for 10 sh -c 'munge -n | unmunge' || die "munge self-test failed"
  fi
  rm -rf "$STATE"
  mkdir -p "$STATE/ctld" "$STATE/d" "$RUN"
  /usr/sbin/slurmctld </dev/null >>"$LOGS/slurmctld.stdout" 2>&1
  # slurmd's first registration must find the controller, else it retries a second later
  wait_for 30 scontrol ping || die "slurmctld did not come up; see $LOGS/slurmctld.log and slurmctld.stdout"
  /usr/sbin/slurmd </dev/null >>"$LOGS/slurmd.stdout" 2>&1
  wait_for 30 sh -c '[ "$(sinfo -h -N -o %T)" = idle ]' \
    || die "node not idle: $(sinfo -h -N -o '%T %E' 2>&1); see $LOGS/slurmd.log"
  log "up: $(sinfo -h -N -o '%N %T %G')"
}

cmd_stop() {
  need_root
  if command -v squeue >/dev/null && scontrol ping >/dev/null 2>&1; then
    # Cancel before stopping slurmd, else running jobs' slurmstepd and workers outlive it.
    squeue -h -o %i | xargs -r scancel || true
    wait_for 30 sh -c '[ -z "$(squeue -h -o %i)" ]' || log "jobs still queued: $(squeue -h -o '%i %T' | tr '\n' ' ')"
  fi
  local pids=() f
  for f in "$RUN/slurmd.pid" "$RUN/slurmctld.pid" /run/munge/munged.pid; do
    if pid_alive "$f"; then pids+=("$(cat "$f")"); fi
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true              # all at once: each takes ~2 s
    local p
    for p in "${pids[@]}"; do
      wait_for 20 sh -c "! kill -0 $p" || { log "pid $p still alive: SIGKILL"; kill -9 "$p" 2>/dev/null || true; }
    done
  fi
  log "stopped"
}

cmd_status() {
  scontrol ping >/dev/null 2>&1 || { log "controller down"; return 1; }
  sinfo -h -N -o '%N %T %G'
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
