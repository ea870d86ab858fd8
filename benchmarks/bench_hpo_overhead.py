"""Overhead of ``hpo.run`` against raw Optuna: same storage, same sampler and pruner, 4 processes.

Both sides run a trivial trainable (``hpo.testing.instant``: a closed-form loss of two
parameters, reported for 3 epochs, Hyperband pruning), so only the cost of the machinery shows.
``hpo.run`` additionally validates the study file, writes each trial's run directory
(``trial.json``, ``result.json``), records user attrs (seed, worker, result, provenance, wall
time), shows a progress bar and collates at the end.

Two throughputs are printed for each side: end to end (process start to exit, including
imports) and in the trial loop (first trial start to last trial end, from the storage).
Each round runs raw and hpo on fresh storages, one after the other, alternating which goes
first; the summary gives the median ratio per storage. Target: hpo ≥ 0.9× raw Optuna.

Usage::

    python benchmarks/bench_hpo_overhead.py [--workers 4] [--trials 60] [--storage sqlite journal] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import optuna
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RAW_WORKER = textwrap.dedent(
    """
    import sys, optuna
    from hpo.testing import instant
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url[8:])) if url.startswith("journal:") else url
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3))

    def objective(trial):
        config = {"x": trial.suggest_float("x", -5, 5), "y": trial.suggest_float("y", -5, 5), "epochs": 3}
        pruned = []

        def callback(epoch, metrics):
            trial.report(metrics["val_loss"], epoch)
            if trial.should_prune():
                pruned.append(epoch)
                return {"stop"}

        result = instant(config, callback)
        if pruned:
            raise optuna.TrialPruned()
        return result["metrics"]["val_loss"]

    study.optimize(objective, n_trials=n)
    """
)


def _storage_url(kind: str, folder: Path, name: str) -> str:
    return f"sqlite:///{folder / (name + '.db')}" if kind == "sqlite" else f"journal:{folder / (name + '.log')}"


def _launch(cmds: list[list[str]], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed ({p.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - t0


def _loop_throughput(url: str, name: str) -> tuple[int, float]:
    from hpo.study import make_storage

    trials = optuna.load_study(study_name=name, storage=make_storage(url)).get_trials(deepcopy=False)
    finished = [t for t in trials if t.datetime_complete is not None]
    span = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()
    return len(finished), len(finished) / span


def _hpo_study(folder: Path, url: str) -> Path:
    study = {
        "name": "hpo",
        "output_dir": str(folder / "out"),
        "storage": url,
        "trainable": "hpo.testing:instant",
        "sampler": {"name": "RandomSampler"},
        "pruner": {"name": "HyperbandPruner", "configs": {"min_resource": 1, "max_resource": 3}},
        "config": {"epochs": 3},
        "tune_params": {
            "x": {"suggest": "float", "kwargs": {"low": -5, "high": 5}, "path": "x"},
            "y": {"suggest": "float", "kwargs": {"low": -5, "high": 5}, "path": "y"},
        },
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def run(workers: int, trials: int, kind: str, hpo_first: bool = False) -> dict[str, float]:
    """One raw and one hpo round on fresh storages; ``hpo_first`` swaps their order (the machine
    is shared, so alternating the order spreads any drift in its load over both sides)."""
    with tempfile.TemporaryDirectory(prefix="bench_hpo_") as tmp:
        folder = Path(tmp)
        raw_url, hpo_url = _storage_url(kind, folder, "raw"), _storage_url(kind, folder, "hpo")
        study = _hpo_study(folder, hpo_url)
        # Raw Optuna workers race to create the SQLite tables ("table ... already exists");
        # create them first. (hpo.study.make_storage serialises that step with a file lock.)
        if kind == "sqlite":
            optuna.storages.RDBStorage(raw_url)
        raw_cmd = [sys.executable, "-c", RAW_WORKER, raw_url, "raw", str(trials)]
        hpo_cmd = [sys.executable, "-m", "hpo.run", "--study", study.name, "--n-trials", str(trials), "--log-level", "WARNING"]
        wall = {}
        for side in ("hpo", "raw") if hpo_first else ("raw", "hpo"):
            wall[side] = _launch([raw_cmd if side == "raw" else hpo_cmd for _ in range(workers)], folder)
        raw_n, raw_loop = _loop_throughput(raw_url, "raw")
        hpo_n, hpo_loop = _loop_throughput(hpo_url, "hpo")
    total = workers * trials
    assert raw_n == hpo_n == total, (raw_n, hpo_n, total)
    return {"raw_e2e": total / wall["raw"], "hpo_e2e": total / wall["hpo"], "raw_loop": raw_loop, "hpo_loop": hpo_loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=60, help="trials per worker")
    parser.add_argument("--storage", choices=("sqlite", "journal"), nargs="+", default=["sqlite", "journal"])
    parser.add_argument("--repeats", type=int, default=3, help="rounds per storage; raw and hpo alternate who goes first")
    args = parser.parse_args()
    print(
        f"bench_hpo_overhead: {args.workers} processes x {args.trials} trials per side, "
        f"storages {', '.join(args.storage)}, {args.repeats} round(s) each, {os.cpu_count()} CPUs",
        flush=True,
    )
    print("throughput in trials/s; ratio = hpo / raw; target ratio >= 0.90", flush=True)
    ratios: dict[tuple[str, str], list[float]] = {}
    for i in range(args.repeats):
        for kind in args.storage:
            r = run(args.workers, args.trials, kind, hpo_first=bool(i % 2))
            for scope, label in (("e2e", "end to end"), ("loop", "trial loop")):
                raw, hpo = r[f"raw_{scope}"], r[f"hpo_{scope}"]
                ratios.setdefault((kind, label), []).append(hpo / raw)
                print(f"round {i + 1}  {kind:7s}  {label:10s}  raw {raw:6.2f}  hpo {hpo:6.2f}  ratio {hpo / raw:.2f}", flush=True)
    print("summary (median ratio over rounds, then every round):")
    for (kind, label), values in ratios.items():
        verdict = "ok" if statistics.median(values) >= 0.9 else "BELOW TARGET"
        print(
            f"  {kind:7s}  {label:10s}  median {statistics.median(values):.2f}  "
            f"[{' '.join(f'{v:.2f}' for v in values)}]  {verdict}"
        )


if __name__ == "__main__":
    main()
