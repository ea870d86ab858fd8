"""Scaling of hpo workers on the Slurm dev cluster and of the three storages.

1. **Slurm speed-up**: 64 trials of a trainable that sleeps 2 s, run by 1 worker and by 8
   workers submitted with :class:`slurm.launch.SlurmLauncher` (target: >= 6x). Wall time is
   measured end to end (submit to last job done: scheduling and start-up included) and over the
   trials alone (first trial start to last trial end).
2. **Storage throughput**: trials per second of a trainable that returns at once, with 4, 8 and
   16 concurrent ``hpo.run`` processes on SQLite, journal and PostgreSQL (measured from the
   first trial's start to the last trial's end, so interpreter start-up is excluded).

Needs ``bash slurm/dev-cluster/up.sh`` (PostgreSQL URL from ``HPO_PG_URL`` or the dev default).

Usage::

    python benchmarks/bench_scale.py                 # both parts, about 5 minutes
    python benchmarks/bench_scale.py --part storage --storage-workers 4 8 16 --out scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import typing as tp
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEV_PG_URL = "postgresql+psycopg2://optuna:optuna@127.0.0.1:5432/optuna"


def _write_study(folder: Path, storage: str, trainable: str, config: dict[str, tp.Any], name: str | None = None) -> Path:
    """A one-parameter study file over ``trainable`` in ``folder``; also used by bench_grpc_proxy.py."""
    import yaml

    name = name or f"bench{uuid.uuid4().hex[:8]}"
    study = {
        "name": name,
        "output_dir": str(folder / "out"),
        "storage": storage,
        "metric": "val_loss",
        "direction": "minimize",
        "pruner": "none",
        "sampler": {"name": "RandomSampler"},
        "trainable": trainable,
        "config": {"x": 0.0, **config},
        "collate_results": False,
        "tune_params": {"x": {"state": True, "suggest": "float", "kwargs": {"low": -1.0, "high": 1.0}, "path": "x"}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _trial_span(study_file: Path) -> tuple[int, float]:
    """(finished trials, seconds from the first trial start to the last trial end)."""
    import optuna
    import yaml

    from hpo.study import make_storage

    raw = yaml.safe_load(study_file.read_text())
    study = optuna.load_study(study_name=raw["name"], storage=make_storage(raw["storage"]))
    done = [t for t in study.get_trials() if t.state.is_finished()]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return len(done), span


def bench_slurm(n_trials: int, sleep_s: float, worker_counts: list[int], folder: Path) -> list[dict[str, tp.Any]]:
    """Wall time of ``n_trials`` sleep trials with each number of Slurm workers."""
    from slurm.launch import SlurmLauncher

    rows = []
    for workers in worker_counts:
        study_file = _write_study(
            folder, f"journal:{folder}/slurm{workers}.journal", "slurm.testing:sleep_trainable", {"sleep_s": sleep_s, "epochs": 1}
        )
        launcher = SlurmLauncher(study_file, workers=workers, trials_per_worker=n_trials // workers)
        t0 = time.perf_counter()
        launcher.launch()
        counts = launcher.wait(progress=False, poll_s=0.5)
        wall = time.perf_counter() - t0
        done, span = _trial_span(study_file)
        rows.append(
            {
                "workers": workers,
                "trials": done,
                "complete": counts.complete,
                "wall_s": round(wall, 1),
                "trials_wall_s": round(span, 1),
            }
        )
        print(f"slurm  {workers:2d} worker(s): {done} trials in {wall:6.1f} s end to end, {span:6.1f} s of trials", flush=True)
    base = rows[0]
    for r in rows:
        r["speedup"] = round(base["wall_s"] / r["wall_s"], 2)
        r["trials_speedup"] = round(base["trials_wall_s"] / r["trials_wall_s"], 2)
    return rows


def bench_storage(
    kinds: list[str], worker_counts: list[int], total_trials: int, folder: Path, pg_url: str | None
) -> list[dict[str, tp.Any]]:
    """Trials/s of concurrent ``hpo.run`` processes per storage and worker count."""
    rows = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for kind in kinds:
        for workers in worker_counts:
            url = {
                "sqlite": f"sqlite:///{folder}/{kind}{workers}.db",
                "journal": f"journal:{folder}/{kind}{workers}.journal",
                "postgres": pg_url,
            }[kind]
            if url is None:
                continue
            study_file = _write_study(folder, url, "slurm.testing:sleep_trainable", {"sleep_s": 0.0, "epochs": 1})
            per_worker = max(1, total_trials // workers)
            cmd = [
                sys.executable,
                "-m",
                "hpo.run",
                "--study",
                str(study_file),
                "--n-trials",
                str(per_worker),
                "--no-progress",
                "--no-collate",
                "--log-level",
                "WARNING",
            ]
            # Create the study once so that the workers race on trials, not on the schema.
            subprocess.run(cmd[:6] + ["0"] + cmd[7:], env=env, check=False, capture_output=True)
            procs = [
                subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for _ in range(workers)
            ]
            errors = [p.communicate()[1] for p in procs]
            failed = sum(p.returncode != 0 for p in procs)
            storage_errors = sum(("database is locked" in e) or ("OperationalError" in e) for e in errors)
            done, span = _trial_span(study_file)
            rows.append(
                {
                    "storage": kind,
                    "workers": workers,
                    "trials": done,
                    "seconds": round(span, 2),
                    "trials_per_s": round(done / span, 1),
                    "failed_workers": failed,
                    "storage_errors": storage_errors,
                }
            )
            print(
                f"storage {kind:8s} {workers:2d} workers: {done} trials, {done / span:6.1f} trials/s "
                f"(failed workers {failed}, storage errors {storage_errors})",
                flush=True,
            )
    return rows


def main(argv: tp.Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("all", "slurm", "storage"), default="all")
    p.add_argument("--trials", type=int, default=64, help="sleep trials for the Slurm speed-up")
    p.add_argument("--sleep-s", type=float, default=2.0)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 8], help="Slurm worker counts (first is the base)")
    p.add_argument("--storages", nargs="+", default=["sqlite", "journal", "postgres"])
    p.add_argument("--storage-workers", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--storage-trials", type=int, default=128, help="trials per storage run (split over workers)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pg_url = os.environ.get("HPO_PG_URL") or DEV_PG_URL
    results: dict[str, tp.Any] = {"host": platform.node(), "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        folder = Path(tmp)
        if args.part in ("all", "slurm"):
            results["slurm"] = bench_slurm(args.trials, args.sleep_s, args.workers, folder)
        if args.part in ("all", "storage"):
            results["storage"] = bench_storage(args.storages, args.storage_workers, args.storage_trials, folder, pg_url)
    results["load_avg_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
