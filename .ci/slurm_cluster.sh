#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the sweep's `--executor slurm` tests.
#
#   .ci/slurm_cluster.sh start DIR   # munged, slurmctld, slurmd; config, state, logs in DIR
#   .ci/slurm_cluster.sh stop DIR    # stops the three daemons by the pids recorded in DIR
#
# After `start`, `export SLURM_CONF=DIR/slurm.conf` points sinfo, sbatch, squeue and scancel at
# it. Everything lives in DIR: its own munge key and socket and free TCP ports, so it neither
# needs nor touches a system-wide Slurm or munge (or another such cluster on the same machine).
# One node with this machine's CPUs and memory; proctrack/linuxproc and task/none (no cgroups,
# which containers often lack); no accounting database. Needs root (slurmd starts jobs as their
# user) and Debian's packages: apt-get install -y slurm-wlm munge.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

stop() {
    # slurmd first (it ends the jobs' steps), then the controller, then munge; by pid only.
    for name in slurmd slurmctld munged; do
        pidfile="$dir/$name.pid"
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    for tool in munged mungekey slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || { echo "error: $tool not found; apt-get install -y slurm-wlm munge" >&2; exit 1; }
    done
    stop  # a previous cluster in the same DIR
    mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
    chmod 700 "$dir/munge"
    # munge: a fresh key, and a socket of our own (the clients find it through AuthInfo).
    rm -f "$dir/munge/munge.key"
    mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null
    chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munged.pid" --seed-file="$dir/munge/munge.seed" \
        --log-file="$dir/log/munged.log"
    for _ in $(seq 50); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done

    host=$(hostname -s)
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    cat >"$dir/slurm.conf" <<EOF
# Written by .ci/slurm_cluster.sh: one node, this machine.
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/state/slurmctld.pid
SlurmdPidFile=$dir/spool/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
# finished jobs stay visible to squeue/scontrol for 10 minutes (the sweep reads their state)
MinJobAge=600
KillWait=10
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    # In the foreground (-D) in the background of this shell: $! is the daemon's own pid.
    slurmctld -D -f "$SLURM_CONF" >>"$dir/log/slurmctld.out" 2>&1 &
    echo $! >"$dir/slurmctld.pid"
    slurmd -D -f "$SLURM_CONF" -N "$host" >>"$dir/log/slurmd.out" 2>&1 &
    echo $! >"$dir/slurmd.pid"
    for _ in $(seq 150); do
        state=$(sinfo -h -N -o %t 2>/dev/null || true)
        [ "$state" = idle ] && { echo "slurm: one node ($host, $cpus CPUs, $memory MB) idle; export SLURM_CONF=$SLURM_CONF"; return 0; }
        sleep 0.2
    done
    echo "error: the Slurm node did not become idle in 30 s (state: ${state:-none}); logs in $dir/log" >&2
    tail -n 5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    stop
    exit 1
}

case $action in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
