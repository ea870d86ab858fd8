"""Many workers on PostgreSQL with and without the gRPC storage proxy (``python -m hpo.proxy``).

For each worker count, local ``python -m hpo.run`` processes of an instant trainable
(``hpo.testing:instant``) run ``--trials-per-worker`` trials each on the dev cluster's
PostgreSQL, either directly (every worker its own connection pool) or through one proxy
(``grpc://127.0.0.1:PORT``, ``--db-connections`` database connections). Printed per run:
trials/s (first trial start to last trial end), the peak number of database connections of the
run (``pg_stat_activity``, sampled every 0.2 s; the run's connections carry a unique
``application_name``), failed workers, and lost trials (expected - complete). Goal: 128 workers
with < 20 database connections and no lost trial.

Needs ``bash slurm/dev-cluster/up.sh`` (PostgreSQL URL from ``HPO_PG_URL`` or the dev default).
Direct runs of many workers use many of the server's connections (100 by default): do not run
them beside other users of the same server.

Usage::

    source /tmp/slurm-ci/env
    python benchmarks/bench_grpc_proxy.py --workers 16 64 --modes direct proxy
    python benchmarks/bench_grpc_proxy.py --workers 128 --modes proxy --out grpc.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import typing as tp
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench_scale import DEV_PG_URL, _write_study  # noqa: E402  (this folder is on sys.path)


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _connections(engine: tp.Any, app: str) -> int:
    import sqlalchemy

    with engine.connect() as conn:
        q = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a")
        return int(conn.execute(q, {"a": app}).scalar() or 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(mode: str, workers: int, trials_per_worker: int, pg: str, db_connections: int, folder: Path) -> dict[str, tp.Any]:
    """One run: ``workers`` processes, directly on ``pg`` or through a proxy of it."""
    import optuna
    import sqlalchemy

    from hpo.study import make_storage

    app = f"hpo-bench-{uuid.uuid4().hex[:8]}"
    marked = sqlalchemy.engine.make_url(pg).update_query_dict({"application_name": app}).render_as_string(hide_password=False)
    name = f"grpcbench{uuid.uuid4().hex[:8]}"
    proxy = None
    if mode == "proxy":
        port = _free_port()
        cmd = [sys.executable, "-m", "hpo.proxy", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--db-connections", str(db_connections), "--threads", str(2 * db_connections)]
        proxy = subprocess.Popen(cmd, env=_env(HPO_STORAGE=marked), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"grpc://127.0.0.1:{port}"
        make_storage(url)  # waits for it
    else:
        url = marked
    monitor = sqlalchemy.create_engine(pg, poolclass=sqlalchemy.pool.NullPool)
    study_file = _write_study(
        folder, "${HPO_STORAGE}", "hpo.testing:instant", {"epochs": 1}, name=name
    )  # the URL stays off the command line
    cmd = [sys.executable, "-m", "hpo.run", "--study", str(study_file), "--n-trials", str(trials_per_worker)]
    cmd += ["--no-progress", "--no-collate", "--log-level", "WARNING"]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=_env(HPO_STORAGE=url), cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    peak = 0
    try:
        while any(p.poll() is None for p in procs):
            peak = max(peak, _connections(monitor, app))
            if time.perf_counter() - t0 > 900:
                raise TimeoutError(f"{mode} {workers}: still running after 900 s")
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    errors = [p.communicate()[1] for p in procs if p.returncode != 0]
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=make_storage(url))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    ends = [t.datetime_complete for t in complete if t.datetime_complete is not None]
    starts = [t.datetime_start for t in complete if t.datetime_start is not None]
    span = (max(ends) - min(starts)).total_seconds() if ends and starts else 0.0
    if proxy is not None:
        proxy.terminate()
        proxy.wait(timeout=30)
    monitor.dispose()
    row = {
        "mode": mode,
        "workers": workers,
        "trials": len(trials),
        "complete": len(complete),
        "lost": workers * trials_per_worker - len(complete),
        "failed_workers": len(errors),
        "trials_per_s": round(len(complete) / span, 2) if span > 0 else None,
        "peak_db_connections": peak,
        "wall_s": round(wall, 1),
    }
    print(
        f"{mode:6s} {workers:4d} workers: {row['complete']:5d}/{workers * trials_per_worker} trials complete, "
        f"{row['trials_per_s']} trials/s, peak {peak} database connections, {len(errors)} failed workers, {wall:.0f} s",
        flush=True,
    )
    if errors:
        from hpo.study import mask_secrets

        print("  first failure: " + mask_secrets(errors[0].strip().splitlines()[-1] if errors[0].strip() else "?"), flush=True)
    return row


def main(argv: tp.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--modes", nargs="+", choices=["direct", "proxy"], default=["direct", "proxy"])
    parser.add_argument("--trials-per-worker", type=int, default=5)
    parser.add_argument("--db-connections", type=int, default=8, help="the proxy's pool (default 8)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args(argv)
    pg = os.environ.get("HPO_PG_URL") or DEV_PG_URL
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_grpc_") as tmp:
        for workers in args.workers:
            for mode in args.modes:
                rows.append(run(mode, workers, args.trials_per_worker, pg, args.db_connections, Path(tmp)))
    for workers in args.workers:
        by = {r["mode"]: r for r in rows if r["workers"] == workers}
        if "direct" in by and "proxy" in by and by["direct"]["trials_per_s"] and by["proxy"]["trials_per_s"]:
            print(
                f"{workers:4d} workers: proxy/direct trials/s {by['proxy']['trials_per_s'] / by['direct']['trials_per_s']:.2f}x, "
                f"database connections {by['proxy']['peak_db_connections']} vs {by['direct']['peak_db_connections']}"
            )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
