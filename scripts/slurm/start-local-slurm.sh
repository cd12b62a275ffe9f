#!/usr/bin/env bash
# Bring up a real, single-machine Slurm cluster for tests: munge, a private MariaDB,
# slurmdbd, slurmctld and N emulated nodes (one `slurmd -N nodeK` each; Debian builds
# Slurm with MULTIPLE_SLURMD). Idempotent: if everything is already up it says so and
# exits 0. Needs root; uses no systemd. See README.md next to this file.
set -euo pipefail

STATE="${CANDLE_SLURM_STATE:-/var/lib/candle-slurm}"
CLUSTER="${CANDLE_SLURM_CLUSTER:-candle}"
NODES="${CANDLE_SLURM_NODES:-4}"
CPUS="${CANDLE_SLURM_CPUS_PER_NODE:-2}"
DB_PORT="${CANDLE_SLURM_DB_PORT:-13306}"
CTLD_PORT="${CANDLE_SLURM_CTLD_PORT:-6817}"
DBD_PORT="${CANDLE_SLURM_DBD_PORT:-6819}"
NODE_PORT0="${CANDLE_SLURM_NODE_PORT0:-17001}"
TIMEOUT="${CANDLE_SLURM_TIMEOUT:-90}"
CONF_DIR=/etc/slurm   # Debian's clients read /etc/slurm/slurm.conf; no SLURM_CONF needed

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOST="$(hostname -s)"
LOG="$STATE/log"
RUN="$STATE/run"
DB_DIR="$STATE/mysql"
DB_SOCK="$DB_DIR/mysqld.sock"
T0=$SECONDS

say() { printf '[start-local-slurm] %s\n' "$*"; }
die() {
    printf '[start-local-slurm] ERROR: %s\n' "$*" >&2
    printf '[start-local-slurm] logs: %s/*.log\n' "$LOG" >&2
    exit 1
}

[[ "$(id -u)" == 0 ]] || die "must run as root"
[[ "$NODES" =~ ^[1-9][0-9]*$ && "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "bad CANDLE_SLURM_NODES/CPUS_PER_NODE"

node_names() { local k; for ((k = 1; k <= NODES; k++)); do printf 'node%d\n' "$k"; done; }

# alive PIDFILE COMM: the pid in PIDFILE is a live process called COMM (a stale pid file
# from a killed daemon, or a recycled pid, must not count as "up").
alive() {
    local pid
    [[ -r "$1" ]] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [[ -n "$pid" && -r "/proc/$pid/comm" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]]
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
    local limit="$1" what="$2" end=$((SECONDS + $1))
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || die "timed out after ${limit}s waiting for $what"
        sleep 0.3
    done
}

# ---------------------------------------------------------------------------- packages
PKGS=(munge slurmctld slurmd slurm-client slurm-wlm-basic-plugins slurmdbd libpmix-dev
      mariadb-server mariadb-client)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    # Keep the packages' maintainer scripts from starting the stock daemons (default
    # ports, /var/lib/mysql): we run our own instances below. 101 = "action forbidden".
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >"/tmp/candle-slurm-apt.log" 2>&1 \
        || apt_failed=1
    if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    if ((${apt_failed:-0})); then
        tail -20 /tmp/candle-slurm-apt.log >&2
        die "apt-get install failed (/tmp/candle-slurm-apt.log)"
    fi
fi

# ---------------------------------------------------------------------------- config
mkdir -p "$LOG" "$RUN" "$STATE/spool/slurmctld" "$CONF_DIR"
for n in $(node_names); do mkdir -p "$STATE/spool/slurmd/$n" "$STATE/tmp/$n"; done
chmod 755 "$STATE"

# The DB password is generated once and kept, so a restart reuses the same database.
if [[ ! -s "$STATE/db.pass" ]]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$STATE/db.pass")
fi
DB_PASS="$(cat "$STATE/db.pass")"

# Memory per emulated node: 3/4 of the RAM split over the nodes, at most 4 GiB, so that
# all nodes' RealMemory fits in the real RAM. DefMemPerCPU = RealMemory/CPUs makes CPUs, not memory,
# the limiting resource by default (without DefMemPerCPU a CR_*_Memory job takes the
# whole node's memory and nothing else fits beside it).
mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
REAL_MEM="${CANDLE_SLURM_MEM_PER_NODE:-$((mem_mb * 3 / 4 / NODES))}"
if [[ -z "${CANDLE_SLURM_MEM_PER_NODE:-}" ]] && ((REAL_MEM > 4096)); then REAL_MEM=4096; fi
DEF_MEM=$((REAL_MEM / CPUS))
last_port=$((NODE_PORT0 + NODES - 1))
if ((NODES == 1)); then NODE_SPEC="NodeName=node1 Port=$NODE_PORT0"
else NODE_SPEC="NodeName=node[1-$NODES] Port=[$NODE_PORT0-$last_port]"; fi

slurm_conf="# Written by $HERE/start-local-slurm.sh; edits are overwritten.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation=$STATE/spool/slurmctld
# %n = node name: every emulated slurmd needs its own spool, pid file, log and TmpFS
# (a shared TmpFS makes the nodes' PMIx servers collide).
SlurmdSpoolDir=$STATE/spool/slurmd/%n
TmpFS=$STATE/tmp/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers: track processes through /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
PropagateResourceLimitsExcept=MEMLOCK
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
JobCompType=jobcomp/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM
SchedulerType=sched/backfill
# batch_sched_delay=0: start a batch job at once instead of ~3 s later.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=2,bf_interval=5
# Trust the declared CPUs/RealMemory (emulated nodes share one machine's hardware).
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MessageTimeout=10
InactiveLimit=0
MinJobAge=300
MaxJobCount=20000
MaxArraySize=1001
$NODE_SPEC NodeHostname=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"

slurmdbd_conf="# Written by $HERE/start-local-slurm.sh; edits are overwritten.
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=$HOST
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
"

# write_if_changed FILE MODE CONTENT: returns 0 if the file had to be (re)written.
write_if_changed() {
    (umask 077; printf '%s' "$3" >"$1.tmp")
    if cmp -s "$1.tmp" "$1"; then
        rm -f "$1.tmp"
        chmod "$2" "$1"
        return 1
    fi
    chown root:root "$1.tmp"
    chmod "$2" "$1.tmp"
    mv -f "$1.tmp" "$1"
}
changed=0
write_if_changed "$CONF_DIR/slurm.conf" 644 "$slurm_conf" && changed=1
write_if_changed "$CONF_DIR/slurmdbd.conf" 600 "$slurmdbd_conf" && changed=1

slurm_daemons_up() {
    alive "$RUN/slurmdbd.pid" slurmdbd && alive "$RUN/slurmctld.pid" slurmctld || return 1
    local n
    for n in $(node_names); do alive "$RUN/slurmd-$n.pid" slurmd || return 1; done
}
# Ready = every node registered and responsive; busy nodes count (a re-run while jobs
# run must not wait for them), DOWN/DRAIN/UNKNOWN or a '*' (not responding) do not.
nodes_ready() {
    [[ "$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u \
          | awk '$2 ~ /^(idle|mix|alloc|comp)$/' | wc -l)" -eq "$NODES" ]]
}
# sacct prints "accounting storage is disabled" (or a slurmdbd error) on stderr.
acct_ok() {
    local err
    err="$(sacct -n -X -S now-1minutes 2>&1 >/dev/null)" && [[ -z "$err" ]]
}
munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
db_ok() { mariadb-admin --no-defaults --socket="$DB_SOCK" -u root ping >/dev/null 2>&1; }

any_slurm_daemon_up() {
    alive "$RUN/slurmdbd.pid" slurmdbd || alive "$RUN/slurmctld.pid" slurmctld && return 0
    local n
    for n in $(node_names); do alive "$RUN/slurmd-$n.pid" slurmd && return 0; done
    return 1
}

# Daemons read their config only at start: a changed config means a restart.
if ((changed)); then
    if any_slurm_daemon_up; then
        say "configuration changed: restarting the cluster"
        "$HERE/stop-local-slurm.sh"
    fi
elif munge_ok && db_ok && slurm_daemons_up && nodes_ready && acct_ok; then
    say "already up: $NODES nodes (cluster $CLUSTER, state $STATE); nothing to do"
    exit 0
fi

# ---------------------------------------------------------------------------- munge
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
# munged refuses to start unless its key and directories are owned by it and private.
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! munge_ok; then
    say "starting munged"
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged </dev/null >>"$LOG/munged.out" 2>&1 \
        || die "munged failed to start (/var/log/munge/munged.log)"
    wait_for 20 "munged (/var/log/munge/munged.log)" munge_ok
fi

# ---------------------------------------------------------------------------- MariaDB
# A private instance (own datadir, socket, port): it does not touch a system MariaDB
# and survives being started without systemd.
if [[ ! -d "$DB_DIR/data/mysql" ]]; then
    say "initialising private MariaDB in $DB_DIR/data"
    rm -rf "$DB_DIR/data"
    install -d -o mysql -g mysql -m 0750 "$DB_DIR" "$DB_DIR/data"
    mariadb-install-db --no-defaults --datadir="$DB_DIR/data" --user=mysql \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$LOG/mariadb-install-db.log" 2>&1 \
        || die "mariadb-install-db failed ($LOG/mariadb-install-db.log)"
fi
chown mysql:mysql "$DB_DIR"
if ! db_ok; then
    say "starting MariaDB on 127.0.0.1:$DB_PORT"
    rm -f "$DB_SOCK"
    # mariadbd drops to the mysql user before it writes its pid file and error log.
    touch "$LOG/mariadb.log" && chown mysql:mysql "$LOG/mariadb.log"
    # slurmdbd logs an error below half its recommended InnoDB settings (1 GiB pool,
    # 64M log, 900 s lock wait); the pool is only touched as it fills, so 512M is cheap.
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB_DIR/data" \
        --socket="$DB_SOCK" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$DB_DIR/mariadbd.pid" --log-error="$LOG/mariadb.log" \
        --skip-name-resolve --innodb-buffer-pool-size=512M \
        --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        </dev/null >>"$LOG/mariadb.log" 2>&1 &
    wait_for "$TIMEOUT" "MariaDB ($LOG/mariadb.log)" db_ok
fi
# Unix-socket root login: idempotent grants for slurmdbd's TCP user.
mariadb --no-defaults --socket="$DB_SOCK" -u root <<SQL || die "creating the slurm DB user failed"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# ---------------------------------------------------------------------------- slurmdbd
dbd_ok() { sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
if ! alive "$RUN/slurmdbd.pid" slurmdbd; then
    say "starting slurmdbd on 127.0.0.1:$DBD_PORT"
    slurmdbd </dev/null >>"$LOG/slurmdbd.out" 2>&1 || die "slurmdbd failed to start"
fi
wait_for "$TIMEOUT" "slurmdbd ($LOG/slurmdbd.log)" dbd_ok
# Register the cluster before slurmctld starts, so its first registration is accepted.
# The root account and root user association come with the cluster; jobs run under them
# (AccountingStorageEnforce is left unset, so other users are accepted too).
if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    say "registering cluster $CLUSTER in slurmdbd"
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
fi

# ---------------------------------------------------------------------------- slurmctld
if ! alive "$RUN/slurmctld.pid" slurmctld; then
    say "starting slurmctld on 127.0.0.1:$CTLD_PORT"
    slurmctld </dev/null >>"$LOG/slurmctld.out" 2>&1 || die "slurmctld failed to start"
fi
wait_for "$TIMEOUT" "slurmctld ($LOG/slurmctld.log)" scontrol ping

# ---------------------------------------------------------------------------- slurmd x N
for n in $(node_names); do
    if ! alive "$RUN/slurmd-$n.pid" slurmd; then
        say "starting slurmd -N $n"
        slurmd -N "$n" </dev/null >>"$LOG/slurmd-$n.out" 2>&1 || die "slurmd -N $n failed to start"
    fi
done

# ---------------------------------------------------------------------------- ready?
begin=$SECONDS; end=$((SECONDS + TIMEOUT)); resumed=0
until nodes_ready; do
    # Nodes left DOWN/DRAIN by an earlier run (e.g. killed mid-job) are put back once,
    # after the slurmds have had a few seconds to register.
    if ((!resumed && SECONDS > begin + 5)); then
        bad="$(sinfo -h -N -t down,drain,drng,fail -o '%N' | sort -u | paste -sd, -)"
        [[ -n "$bad" ]] && scontrol update NodeName="$bad" State=RESUME >/dev/null 2>&1 || true
        resumed=1
    fi
    if ((SECONDS >= end)); then
        sinfo -N -l >&2 || true
        sinfo -R >&2 || true
        die "not all $NODES nodes up after ${TIMEOUT}s"
    fi
    sleep 0.3
done
wait_for "$TIMEOUT" "sacct to answer" acct_ok
# slurmctld runs its first main scheduling cycle ~4 s after it starts; a job submitted
# before that waits for it. Wait here, so the first job starts as fast as later ones.
sched_ran() {
    sdiag 2>/dev/null | sed -n '/^Main schedule/,/^Backfilling/p' \
        | awk '/Total cycles:/ {n = $3} END {exit !(n > 0)}'
}
wait_for "$TIMEOUT" "slurmctld's first scheduling cycle" sched_ran

say "up in $((SECONDS - T0))s: cluster $CLUSTER, partition debug, $NODES nodes x $CPUS CPUs x ${REAL_MEM}MB, accounting on (slurmdbd :$DBD_PORT, MariaDB :$DB_PORT), state $STATE, logs $LOG"
