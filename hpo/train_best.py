"""``python -m hpo.train_best``: retrain the best parameters with K seeds on the full budget.

Each run goes to ``<output_dir>/<study>/best/seed-<seed>/`` (the trainable's usual
artifacts); ``best/summary.json`` holds every run's metric and their mean ± std, and the
report is re-rendered with a "Final training" section. ``quick_scan`` does not apply here and
the study file's ``train_best.config`` overrides (e.g. more epochs) do. A run that was
interrupted resumes from its checkpoint when the command is repeated.

Example::

    python -m hpo.train_best --study studies/quickstart.yaml --seeds 3
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import typing as tp

import optuna

from fspnet._io import write_json
from hpo.errors import HpoError
from hpo.report import best_params, report
from hpo.space import apply_params
from hpo.study import StudyConfig, load_study_config, open_study
from hpo.trainables._base import _deep_update

__all__ = ["main", "train_best"]

_LOG = logging.getLogger(__name__)


def train_best(cfg: StudyConfig, *, seeds: int | None = None, study: optuna.Study | None = None,
               storage: str | None = None, render: bool = True) -> dict[str, tp.Any]:
    """Train the best trial's parameters with ``seeds`` seeds and summarise the metric.

    Args:
        cfg: the validated study (its trainable config must be resolvable).
        seeds: number of seeds (default: the file's ``train_best.seeds``, else 3).
        study: the loaded study (default: opened from ``storage`` or ``cfg.storage``).
        storage: a storage URL replacing the file's.
        render: re-render ``report.html`` with the summary.

    Returns:
        The summary written to ``best/summary.json``: ``metric``, ``params``, ``paths``,
        ``runs`` (seed, value, run_dir, metrics), ``mean`` and ``std``.

    Raises:
        HpoError: when the study has no completed trial.
    """
    if study is None:
        study = open_study(cfg, storage)
    best = best_params(cfg, study)
    if best is None:
        raise HpoError(f"study {cfg.name!r} has no completed trial yet; run python -m hpo.run --study {cfg.path} first")
    n_seeds = int(seeds or cfg.train_best.get("seeds", 3))
    trainable = cfg.get_trainable()
    base = _deep_update(cfg.base_config, cfg.train_best.get("config") or {})
    config = apply_params(base, cfg.tune_params, best["params"])
    trainable.check_config(config)
    metric = cfg.metrics[0]
    runs = []
    for k in range(n_seeds):
        seed = cfg.seed + k
        run_dir = cfg.study_dir / "best" / f"seed-{seed}"
        resume = run_dir.is_dir() and any(run_dir.iterdir())
        _LOG.info("final training %d/%d: seed %d in %s%s", k + 1, n_seeds, seed, run_dir, " (resuming)" if resume else "")
        result = trainable.train(trainable.prepare(config, run_dir=run_dir, seed=seed, resume=resume), None)
        value = float(result.get("metrics", {}).get(metric, math.nan))
        runs.append({"seed": seed, "value": value, "run_dir": str(run_dir),
                     "metrics": {k2: float(v) for k2, v in result.get("metrics", {}).items() if isinstance(v, (int, float))}})
    values = [r["value"] for r in runs]
    summary = {
        "study": cfg.name, "trial": best["trial"], "metric": metric, "direction": cfg.directions[0],
        "params": best["params"], "paths": best["paths"], "runs": runs,
        "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }
    write_json(cfg.study_dir / "best" / "summary.json", summary)
    if render:
        report(cfg, study, storage=storage)
    return summary


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m hpo.train_best`` / ``hpo-train-best``."""
    parser = argparse.ArgumentParser(prog="hpo-train-best", description="Retrain a study's best parameters with several seeds.")
    parser.add_argument("--study", required=True, help="study YAML")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: train_best.seeds, else 3)")
    parser.add_argument("--storage", default=None, help="storage URL replacing the file's")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        cfg = load_study_config(args.study, storage=args.storage)
        s = train_best(cfg, seeds=args.seeds, storage=args.storage)
    except (HpoError, ValueError) as e:
        print(f"hpo-train-best: error: {e}", file=sys.stderr)
        return 2
    print(f"{cfg.name}: best params of trial {s['trial']} over {len(s['runs'])} seeds: "
          f"{s['metric']} = {s['mean']:.5g} ± {s['std']:.3g}")
    for r in s["runs"]:
        print(f"  seed {r['seed']}: {r['value']:.5g}  ({r['run_dir']})")
    print(f"report: {cfg.study_dir / 'report.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
