#!/usr/bin/env bash
# Stop what up.sh started, by PID file only (never by process name). Jobs still queued or
# running on the dev cluster are cancelled first. Keeps the state directory unless --purge.
#
#   bash slurm/dev-cluster/down.sh [--purge]
set -uo pipefail
RUN=${SLURM_CI_DIR:-/tmp/slurm-ci}
purge=0; [ "${1:-}" = --purge ] && purge=1
log() { echo "[dev-cluster] $*"; }

stop() {  # stop PIDFILE NAME
  [ -s "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { log "stopped $2 ($pid)"; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null; log "killed $2 ($pid)"
}

if [ -s "$RUN/slurmctld.pid" ] && kill -0 "$(cat "$RUN/slurmctld.pid")" 2>/dev/null; then
  scancel --user=root 2>/dev/null || true
fi
stop "$RUN/slurmd.pid" slurmd
stop "$RUN/slurmctld.pid" slurmctld
stop "$RUN/slurmdbd.pid" slurmdbd
stop /run/mysqld/mysqld.pid mariadbd
PGV=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
if [ -n "$PGV" ] && pg_lsclusters -h 2>/dev/null | grep -q "^$PGV main .* online"; then
  pg_ctlcluster "$PGV" main stop && log "stopped postgres $PGV"
fi
stop /run/munge/munged.pid munged
if [ "$purge" = 1 ]; then rm -rf "$RUN"; log "removed $RUN"; fi
