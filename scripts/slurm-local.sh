#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try the cluster path of a sweep (hydra/launcher=slurm) on a
# laptop and to test it in CI (tests/test_slurm.py, pytest -m slurm).
#
#   sudo scripts/slurm-local.sh start     # munged, slurmctld and slurmd; waits until sinfo shows the node idle
#   scripts/slurm-local.sh status         # the daemons it started, and sinfo / squeue
#   sudo scripts/slurm-local.sh stop      # cancels the cluster's jobs, stops what start started, waits for it
#
# Needs Debian's (or Ubuntu's) packages: apt-get install slurm-wlm munge. Everything it writes is in its state
# folder, /tmp/runner-slurm by default (RUNNER_SLURM_STATE=PATH moves it): slurm.conf, a munge key of its own,
# the daemons' logs, spool folders and PID files. Its munged listens on a socket in that folder, so a munged
# of the system is left alone. stop ends only the processes whose PIDs start recorded there (never by name).
#
# Clients (sinfo, sbatch, the submitit launcher) find the cluster through SLURM_CONF=<state>/slurm.conf; when
# the system has no /etc/slurm/slurm.conf, start links it to the state folder's (stop removes the link), so
# they find it without. RUNNER_SLURM_PORTS=6817,6818 sets slurmctld's and slurmd's ports.
#
# A requeued job (scontrol requeue, or submitit's requeue at a time limit) may start again after SLURM's
# credential lifetime, 120 s by default; this cluster sets it to 15 s (RUNNER_SLURM_REQUEUE_WAIT=SECONDS, at
# least 5) and schedules every 5 s, so that a requeued job is back within about 20 s.
set -euo pipefail

STATE=${RUNNER_SLURM_STATE:-/tmp/runner-slurm}
PORTS=${RUNNER_SLURM_PORTS:-6817,6818}
REQUEUE_WAIT=${RUNNER_SLURM_REQUEUE_WAIT:-15}
CONF="$STATE/slurm.conf"
MUNGE_DIR="$STATE/munge"
SOCKET="$MUNGE_DIR/munge.socket.2"
ETC_CONF=/etc/slurm/slurm.conf
HOST=$(hostname -s 2>/dev/null || uname -n)
PATH="$PATH:/usr/sbin:/sbin"

say() { echo "slurm-local: $*"; }
fail() { echo "slurm-local: $*" >&2; exit 1; }

need_packages() {
    local missing=()
    for program in munged slurmctld slurmd sinfo sbatch scontrol squeue scancel; do
        command -v "$program" >/dev/null || missing+=("$program")
    done
    if ((${#missing[@]})); then
        fail "${missing[*]} not found. Install the packages first (Debian/Ubuntu, as root):
    apt-get update && apt-get install -y slurm-wlm munge"
    fi
}

need_root() {
    [[ $(id -u) -eq 0 ]] || fail "$1 needs root: the daemons run as root (munged as the munge user). Run: sudo $0 $1"
}

# The PID recorded in FILE when that process is alive and is PROGRAM; empty otherwise (a PID file left over
# from a process that ended, or whose PID went to another program, names nothing of ours).
recorded_pid() {
    local file=$1 program=$2 pid
    [[ -s $file ]] || return 0
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$program" ]] && echo "$pid"
    return 0
}

munged_pid() { recorded_pid "$MUNGE_DIR/munged.pid" munged; }
slurmctld_pid() { recorded_pid "$STATE/run/slurmctld.pid" slurmctld; }
slurmd_pid() { recorded_pid "$STATE/run/slurmd.pid" slurmd; }

client_env() {
    export SLURM_CONF="$CONF"
}

node_state() {
    client_env
    timeout 10 sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -1 || true
}

write_config() {
    local cpus memory ctld_port d_port
    cpus=$(nproc)
    # Memory slurmd may report: 90% of the machine's, so that the node is not drained for having less.
    memory=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    IFS=, read -r ctld_port d_port <<<"$PORTS"
    mkdir -p "$STATE/run" "$STATE/log" "$STATE/spool/ctld" "$STATE/spool/d"
    cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on $HOST, controller and node on this machine.
ClusterName=runner-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (SLURM's default: 120 s).
AuthInfo=socket=$SOCKET,cred_expire=$REQUEUE_WAIT
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
# Scheduling passes every few seconds, so that a requeued job starts soon after its wait.
SchedulerParameters=sched_interval=5,bf_interval=5
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munged() {
    if [[ -n $(munged_pid) ]]; then
        say "munged already running (PID $(munged_pid))"
        return
    fi
    mkdir -p "$MUNGE_DIR"
    if [[ ! -s $MUNGE_DIR/munge.key ]]; then
        dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
    fi
    chown -R munge:munge "$MUNGE_DIR"
    chmod 0755 "$MUNGE_DIR" # clients of any user reach the socket; only munge writes here
    chmod 0600 "$MUNGE_DIR/munge.key"
    rm -f "$SOCKET" "$SOCKET.lock"
    # munged forks into the background and records its PID.
    runuser -u munge -- munged --socket="$SOCKET" --key-file="$MUNGE_DIR/munge.key" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" ||
        fail "munged did not start: see $MUNGE_DIR/munged.log"
    for _ in $(seq 50); do
        [[ -S $SOCKET && -n $(munged_pid) ]] && break
        sleep 0.1
    done
    [[ -n $(munged_pid) ]] || fail "munged did not start: see $MUNGE_DIR/munged.log"
    say "munged started (PID $(munged_pid), socket $SOCKET)"
}

start_daemon() {
    local program=$1 pid
    pid=$("${program}_pid")
    if [[ -n $pid ]]; then
        say "$program already running (PID $pid)"
        return
    fi
    # Both fork into the background and write their PID files (SlurmctldPidFile, SlurmdPidFile).
    if [[ $program == slurmctld ]]; then
        slurmctld -f "$CONF" || fail "slurmctld did not start: see $STATE/log/slurmctld.log"
    else
        slurmd -f "$CONF" -N "$HOST" || fail "slurmd did not start: see $STATE/log/slurmd.log"
    fi
    for _ in $(seq 100); do
        pid=$("${program}_pid")
        [[ -n $pid ]] && break
        sleep 0.1
    done
    [[ -n $pid ]] || fail "$program did not start: see $STATE/log/$program.log"
    say "$program started (PID $pid)"
}

link_etc_conf() {
    # Clients read /etc/slurm/slurm.conf unless SLURM_CONF says otherwise: link it here when the system has none.
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
        return
    fi
    if [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
        say "$ETC_CONF exists and is not this cluster's: left alone; clients need: export SLURM_CONF=$CONF"
        return
    fi
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -s "$CONF" "$ETC_CONF"
    echo "$ETC_CONF" >"$STATE/run/linked"
    say "linked $ETC_CONF -> $CONF (stop removes it)"
}

start() {
    need_packages
    need_root start
    if [[ -n $(munged_pid) && -n $(slurmctld_pid) && -n $(slurmd_pid) && $(node_state) == idle* ]]; then
        say "already running (state folder $STATE): munged $(munged_pid), slurmctld $(slurmctld_pid), slurmd $(slurmd_pid)"
        status_lines
        return
    fi
    mkdir -p "$STATE"
    chmod 0755 "$STATE"
    [[ -n $(slurmctld_pid) ]] || write_config
    start_munged
    start_daemon slurmctld
    start_daemon slurmd
    link_etc_conf
    local state="" resumed=0
    for _ in $(seq 120); do
        state=$(node_state)
        [[ $state == idle* ]] && break
        if [[ $state == drain* || $state == down* ]] && ((!resumed)); then
            # Left drained or down by an earlier run of this cluster (a job that would not die, a restart).
            scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
            resumed=1
        fi
        sleep 0.5
    done
    if [[ $state != idle* ]]; then
        fail "node $HOST is '${state:-not answering}' after 60 s; see $STATE/log/slurmctld.log and slurmd.log"
    fi
    say "node $HOST idle; state folder $STATE"
    status_lines
    say "clients: export SLURM_CONF=$CONF   (then: sinfo; python -m runner.train -m hydra/launcher=slurm seed=0,1)"
}

status_lines() {
    client_env
    timeout 10 sinfo 2>&1 | sed 's/^/  /' || true
    timeout 10 squeue 2>&1 | sed 's/^/  /' || true
}

status() {
    local any=0 pid
    for program in munged slurmctld slurmd; do
        pid=$("${program}_pid")
        if [[ -n $pid ]]; then
            say "$program running (PID $pid)"
            any=1
        else
            say "$program not running"
        fi
    done
    if ((any)) && command -v sinfo >/dev/null; then
        status_lines
    fi
    say "state folder $STATE"
    ((any)) || return 3
}

# Stop one recorded process: SIGTERM, wait for it to exit (SIGKILL after 30 s).
stop_pid() {
    local program=$1 pid=$2
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
        say "$program (PID $pid) still running after 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
    fi
    say "$program stopped (PID $pid)"
}

stop() {
    need_root stop
    local pid jobs=()
    if [[ -n $(slurmctld_pid) ]]; then
        client_env
        # The jobs of this cluster first, so that no job step outlives its slurmd.
        mapfile -t jobs < <(timeout 10 squeue -h -o %i 2>/dev/null || true)
        if ((${#jobs[@]})); then
            say "cancelling the cluster's jobs: ${jobs[*]}"
            timeout 10 scancel "${jobs[@]}" 2>/dev/null || true
            local left=""
            for _ in $(seq 60); do
                left=$(timeout 10 squeue -h -t running,completing -o %i 2>/dev/null || true)
                [[ -z $left ]] && break
                sleep 0.5
            done
            [[ -z $left ]] || say "jobs still ending after 30 s: $(echo "$left" | tr '\n' ' ')(their slurmstepd may outlive slurmd)"
        fi
    fi
    for program in slurmd slurmctld munged; do
        pid=$("${program}_pid")
        if [[ -n $pid ]]; then
            stop_pid "$program" "$pid"
        else
            say "$program not running"
        fi
    done
    rm -f "$STATE/run/slurmd.pid" "$STATE/run/slurmctld.pid" "$MUNGE_DIR/munged.pid"
    if [[ -s $STATE/run/linked && -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
        rm -f "$ETC_CONF"
        say "removed the link $ETC_CONF"
    fi
    rm -f "$STATE/run/linked"
    say "stopped; the state folder $STATE (config, logs) stays: remove it by hand to start afresh"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status   (state folder: \${RUNNER_SLURM_STATE:-/tmp/runner-slurm})" >&2
    exit 2
    ;;
esac
