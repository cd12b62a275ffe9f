#!/usr/bin/env bash
# Tear down the cluster that start-local-slurm.sh brought up: the slurmds, slurmctld,
# slurmdbd and the private MariaDB (munge is left running; it is harmless and shared).
# Idempotent: exits 0 when nothing runs. State (job ids, accounting DB) stays in
# $CANDLE_SLURM_STATE, so the next start continues where this one left off.
set -euo pipefail

STATE="${CANDLE_SLURM_STATE:-/var/lib/candle-slurm}"
RUN="$STATE/run"
WAIT="${CANDLE_SLURM_STOP_TIMEOUT:-30}"

say() { printf '[stop-local-slurm] %s\n' "$*"; }

[[ "$(id -u)" == 0 ]] || { say "must run as root" >&2; exit 1; }

# pids_of COMM [MARKER]: live processes whose name is exactly COMM and, when MARKER is
# given, whose command line contains it (so another MariaDB on the machine is not hit).
pids_of() {
    local pid
    for pid in $(pgrep -x "$1" || true); do
        if [[ -z "${2:-}" ]] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"; then
            echo "$pid"
        fi
    done
}

# stop WHAT WAIT PID...: SIGTERM, wait up to WAIT s, then SIGKILL what is left.
stop() {
    local what="$1" pid left end=$((SECONDS + $2))
    shift 2
    (($#)) || return 0
    say "stopping $what (pid $*)"
    kill -TERM "$@" 2>/dev/null || true
    while :; do
        left=()
        for pid in "$@"; do [[ -d "/proc/$pid" ]] && left+=("$pid"); done
        ((${#left[@]})) || return 0
        if ((SECONDS >= end)); then
            say "$what did not exit in time: SIGKILL ${left[*]}"
            kill -KILL "${left[@]}" 2>/dev/null || true
            sleep 0.5
            return 0
        fi
        sleep 0.2
    done
}

# Pid files first (they name exactly our daemons); then exact-name matches catch
# daemons whose pid file was lost. Only one Slurm runs on this machine, so every
# slurmd/slurmctld/slurmdbd/slurmstepd here is ours.
# A pid file counts only if its pid is still a process called COMM (pids get reused).
from_pidfiles() {
    local comm="$1" f pid
    shift
    for f in "$@"; do
        [[ -r "$f" ]] || continue
        pid="$(tr -dc '0-9' <"$f")"
        if [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]; then
            echo "$pid"
        fi
    done
}
# collect COMM MARKER PIDFILE...
collect() { { from_pidfiles "$1" "${@:3}"; pids_of "$1" "$2"; } | sort -u; }

# Running jobs cannot survive their slurmds: cancel them while slurmctld can still
# record it (sacct then says CANCELLED, not a NODE_FAIL on the next start). Pending jobs
# are left alone and are still queued after the next start.
if [[ -n "$(from_pidfiles slurmctld "$RUN/slurmctld.pid")" ]] \
        && [[ -n "$(squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ]]; then
    say "cancelling running jobs: $(squeue -h -t RUNNING -o %i | paste -sd' ' -)"
    scancel --state=RUNNING 2>/dev/null || true
    end=$((SECONDS + 15))
    while [[ -n "$(squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ]] && ((SECONDS < end)); do
        sleep 0.3
    done
fi

mapfile -t p < <(collect slurmd "" "$RUN"/slurmd-*.pid);           stop slurmd "$WAIT" "${p[@]}"
mapfile -t p < <(collect slurmctld "" "$RUN/slurmctld.pid");       stop slurmctld "$WAIT" "${p[@]}"
# Job steps outlive slurmd and with it gone nobody would reap them; slurmstepd ignores
# SIGTERM, hence the short grace.
mapfile -t p < <(pids_of slurmstepd);                             stop slurmstepd 3 "${p[@]}"
mapfile -t p < <(collect slurmdbd "" "$RUN/slurmdbd.pid");         stop slurmdbd "$WAIT" "${p[@]}"
mapfile -t p < <(collect mariadbd "--datadir=$STATE/mysql/data" "$STATE/mysql/mariadbd.pid")
stop "private MariaDB" "$WAIT" "${p[@]}"

rm -f "$RUN"/*.pid "$STATE/mysql/mariadbd.pid"
say "stopped (state kept in $STATE)"
