#!/usr/bin/env bash
# Start a real single-node Slurm cluster (munge, slurmctld, slurmd, slurmdbd + MariaDB so that
# sacct works, fake GPUs through gres) and a PostgreSQL server with a test role and database.
#
# For Debian/Ubuntu machines without systemd (CI containers, a root shell on a laptop VM).
# Run as root. Idempotent: a daemon whose PID file points at a live process is left alone, so
# calling it again is cheap (about 1 s). From a fresh machine, apt install included: about 30 s.
#
#   bash slurm/dev-cluster/up.sh            # start (or check) everything
#   source /tmp/slurm-ci/env                # HPO_PG_URL=postgresql+psycopg2://... for tests
#   sbatch --array=0-3 slurm/launch_hpo.sbatch
#   bash slurm/dev-cluster/down.sh          # stop everything again
#
# Settings (environment variables):
#   SLURM_CI_DIR    state, spool, logs, PID files, fake GPU devices   (/tmp/slurm-ci)
#   WITH_SLURMDBD   1 = slurmdbd + MariaDB (submitit needs sacct)      (1)
#   WITH_POSTGRES   1 = start PostgreSQL and create role/db "optuna"   (1)
#   SLURM_VCPUS     CPUs the node advertises (oversubscribes the cores) (8)
#   SLURM_FAKE_GPUS fake GPUs on the node                               (4)
#   SLURM_MEM_MB    memory the node advertises                          (16000)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN=${SLURM_CI_DIR:-/tmp/slurm-ci}
WITH_DBD=${WITH_SLURMDBD:-1}
WITH_PG=${WITH_POSTGRES:-1}
VCPUS=${SLURM_VCPUS:-8}
GPUS=${SLURM_FAKE_GPUS:-4}
MEM_MB=${SLURM_MEM_MB:-16000}
MAX_ARRAY_SIZE=${SLURM_MAX_ARRAY_SIZE:-1001}
CLUSTER=dev
HOST=$(hostname -s)
PG_ROLE=optuna PG_DB=optuna PG_PASSWORD=optuna   # a throw-away local test account
DBD_PASSWORD=slurmdbd-dev
export DEBIAN_FRONTEND=noninteractive
ACCOUNTING="AccountingStorageType=accounting_storage/none"   # GNU sed turns \n into a newline
t0=$(date +%s)
log() { echo "[dev-cluster] $*"; }
die() { echo "[dev-cluster] error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts system daemons)"
command -v apt-get >/dev/null || die "needs a Debian/Ubuntu machine (apt-get not found)"

alive() {  # alive PIDFILE -> true when the PID file names a live process
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
wait_for() {  # wait_for SECONDS WHAT CMD... -> poll CMD every 0.1 s
  local n=$(( $1 * 10 )) what=$2; shift 2
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up within ${n}0 ms; see $RUN/log/"
}
render() {  # render TEMPLATE -> stdout with @VARS@ replaced
  sed -e "s|@RUN@|$RUN|g" -e "s|@HOST@|$HOST|g" -e "s|@CLUSTER@|$CLUSTER|g" \
      -e "s|@VCPUS@|$VCPUS|g" -e "s|@GPUS@|$GPUS|g" -e "s|@LAST_GPU@|$((GPUS - 1))|g" \
      -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@MAX_ARRAY_SIZE@|$MAX_ARRAY_SIZE|g" \
      -e "s|@DBD_PASSWORD@|$DBD_PASSWORD|g" -e "s|@ACCOUNTING@|$ACCOUNTING|g" "$1"
}
install_conf() {  # install_conf TEMPLATE DEST MODE -> 0 if DEST changed
  local tmp; tmp=$(mktemp)
  render "$1" >"$tmp"
  if [ -f "$2" ] && cmp -s "$tmp" "$2"; then rm -f "$tmp"; return 1; fi
  install -m "$3" "$tmp" "$2"; rm -f "$tmp"; return 0
}

# ---- packages ----
pkgs="slurmctld slurmd slurm-client munge"
[ "$WITH_DBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
[ "$WITH_PG" = 1 ] && pkgs="$pkgs postgresql"
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  log "installing $(echo $missing)"
  apt-get update -qq
  # policy-rc.d in containers keeps apt from starting the daemons; we start them below.
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

mkdir -p "$RUN"/{state,spool,log,dev} /etc/slurm
for i in $(seq 0 $((GPUS - 1))); do
  [ -c "$RUN/dev/gpu$i" ] || mknod "$RUN/dev/gpu$i" c 1 3
done

# ---- munge ----
install -d -o munge -g munge -m 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  mungekey -c -k /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
if ! alive /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged
fi
wait_for 5 munged munge -n

# ---- MariaDB + slurmdbd ----
if [ "$WITH_DBD" = 1 ]; then
  install -d -o mysql -g mysql /run/mysqld
  if ! alive /run/mysqld/mysqld.pid; then
    nohup /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql \
      --socket=/run/mysqld/mysqld.sock --bind-address=127.0.0.1 \
      --pid-file=/run/mysqld/mysqld.pid >"$RUN/log/mariadb.log" 2>&1 &
  fi
  wait_for 20 MariaDB mariadb -e 'select 1'
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBD_PASSWORD';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DBD_PASSWORD';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  if install_conf "$HERE/slurmdbd.conf.in" /etc/slurm/slurmdbd.conf 600 && alive "$RUN/slurmdbd.pid"; then
    kill "$(cat "$RUN/slurmdbd.pid")"; sleep 0.5
  fi
  alive "$RUN/slurmdbd.pid" || slurmdbd
  ACCOUNTING="AccountingStorageType=accounting_storage/slurmdbd\\nAccountingStorageHost=localhost"
fi

# ---- slurmctld + slurmd ----
changed=0
install_conf "$HERE/slurm.conf.in" /etc/slurm/slurm.conf 644 && changed=1
install_conf "$HERE/gres.conf.in" /etc/slurm/gres.conf 644 && changed=1
if [ "$WITH_DBD" = 1 ]; then  # slurmdbd must know the cluster before slurmctld registers
  wait_for 20 slurmdbd sacctmgr -n list cluster
  sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if [ "$changed" = 1 ]; then   # a new config needs fresh daemons (cred_expire, gres, node CPUs)
  for d in slurmd slurmctld; do
    if alive "$RUN/$d.pid"; then
      pid=$(cat "$RUN/$d.pid"); kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
fi
alive "$RUN/slurmctld.pid" || slurmctld
alive "$RUN/slurmd.pid" || slurmd
node_up() { sinfo -h -o %t | grep -qE '^(idle|mix|alloc)'; }
wait_for 20 "slurmd (node idle)" node_up
[ "$WITH_DBD" = 1 ] && wait_for 20 "sacct" sacct -n -X -S now

# ---- PostgreSQL ----
PG_URL=""
if [ "$WITH_PG" = 1 ]; then
  PGV=$(ls /etc/postgresql | sort -V | tail -1)
  pg_lsclusters -h | grep -q "^$PGV main .* online" || pg_ctlcluster "$PGV" main start
  psql_su() { runuser -u postgres -- psql -qtAX "$@"; }
  wait_for 20 PostgreSQL psql_su -c 'select 1'
  [ "$(psql_su -c "SELECT 1 FROM pg_roles WHERE rolname='$PG_ROLE'")" = 1 ] \
    || psql_su -c "CREATE ROLE $PG_ROLE LOGIN PASSWORD '$PG_PASSWORD'"
  psql_su -c "ALTER ROLE $PG_ROLE CREATEDB"   # tests start studies on freshly created databases
  [ "$(psql_su -c "SELECT 1 FROM pg_database WHERE datname='$PG_DB'")" = 1 ] \
    || psql_su -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE"
  PG_URL="postgresql+psycopg2://$PG_ROLE:$PG_PASSWORD@127.0.0.1:5432/$PG_DB"
fi

# Environment for tests and users: source it (written without echoing the password).
umask 077
{
  echo "export SLURM_CI_DIR=$RUN"
  echo "export SLURM_DEV_CLUSTER=$CLUSTER"
  echo "export SLURM_DEV_GPUS=$GPUS"
  [ -n "$PG_URL" ] && echo "export HPO_PG_URL=$PG_URL"
} >"$RUN/env.tmp" && mv "$RUN/env.tmp" "$RUN/env"

sinfo -N -o '%N %t %c CPUs %m MB %G' | sed 's/^/[dev-cluster] /'
[ -n "$PG_URL" ] && log "PostgreSQL: postgresql+psycopg2://$PG_ROLE:***@127.0.0.1:5432/$PG_DB"
log "up in $(( $(date +%s) - t0 )) s; environment: source $RUN/env"
