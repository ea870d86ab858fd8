"""``python -m hpo.train_best``: retrain the best parameters with K seeds on the full budget.

Each run goes to ``<output_dir>/<study>/best/seed-<seed>/`` (the trainable's usual
artifacts); ``best/summary.json`` holds every run's metric and their mean ± std, and the
report is re-rendered with a "Final training" section. ``quick_scan`` does not apply here and
the study file's ``train_best.config`` overrides (e.g. more epochs) do. A run that was
interrupted resumes from its checkpoint when the command is repeated (a finished one returns at
once).

With ``--install DIR`` (an ``fspnet`` encoder study), the seed with the best metric is installed
as pre-trained networks by :func:`fspnet.pretrained.install` with an ``origin.json`` naming the
study, the trial number, its parameters, the seeds' values and the commits (and the same for
the decoder when it is another study's final training); ``DIR`` is ``fspnet/pretrained`` to
replace the shipped networks, which ``python -m fspnet.predict --pretrained`` then uses.
``--install-seed N`` installs seed N instead (e.g. the one evaluated) and ``--evaluation
SUMMARY_JSON`` installs its held-out evaluation (``python -m fspnet.evaluate``) beside it;
``--ensemble`` installs every seed as one ensemble that predicts their mean (it leads).

Example::

    python -m hpo.train_best --study studies/quickstart.yaml --seeds 3
    python -m hpo.train_best --study studies/fspnet_encoder.yaml --seeds 3 --install fspnet/pretrained
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import typing as tp
from pathlib import Path

import optuna

from hpo.collate import best_params
from hpo.errors import HpoError
from hpo.report import report
from hpo.space import apply_params
from hpo.study import (
    StudyConfig,
    add_override_arguments,
    bind_study_dir,
    load_study_config,
    open_study,
    override_list,
    storage_url,
)
from hpo.trainables._base import _deep_update
from runtools.io import write_json

__all__ = ["install_best", "main", "train_best"]

_LOG = logging.getLogger(__name__)


def train_best(
    cfg: StudyConfig,
    *,
    seeds: int | None = None,
    study: optuna.Study | None = None,
    storage: str | None = None,
    render: bool = True,
    only: int | None = None,
) -> dict[str, tp.Any]:
    """Train the best trial's parameters with ``seeds`` seeds and summarise the metric.

    Args:
        cfg: the validated study (its trainable config must be resolvable).
        seeds: number of seeds (default: the file's ``train_best.seeds``, else 3).
        study: the loaded study (default: opened from ``storage`` or ``cfg.storage``).
        storage: a storage URL replacing the file's.
        render: re-render ``report.html`` with the summary.
        only: train just the ``only``-th of the seeds (seed = study seed + ``only``) and write no
            summary: seeds then train in parallel (one process or job each), and a run without
            ``only`` resumes the finished runs at once and writes the summary.

    Returns:
        The summary written to ``best/summary.json``: ``study``, ``trial``, ``metric``,
        ``direction``, ``params``, ``paths``, ``config`` (trained, before run dir and seed),
        ``runs`` (seed, value, run_dir, metrics), ``mean`` and ``std``.

    Raises:
        HpoError: when the study has no completed trial.
    """
    if study is None:
        study = open_study(cfg, storage)
    bind_study_dir(cfg, study, storage)
    best = best_params(cfg, study)
    if best is None:
        raise HpoError(f"study {cfg.name!r} has no completed trial yet; run python -m hpo.run --study {cfg.path} first")
    n_seeds = int(seeds or cfg.train_best.get("seeds", 3))
    if only is not None and not 0 <= only < n_seeds:
        raise HpoError(f"seed index {only} is not one of the {n_seeds} seeds (0 to {n_seeds - 1})")
    trainable = cfg.get_trainable()
    base = _deep_update(cfg.base_config, cfg.train_best.get("config") or {})
    config = apply_params(base, cfg.tune_params, best["params"])
    trainable.check_config(config)
    metric = cfg.metrics[0]
    runs: list[dict[str, tp.Any]] = []
    for k in range(n_seeds) if only is None else [only]:
        seed = cfg.seed + k
        run_dir = cfg.study_dir / "best" / f"seed-{seed}"
        resume = run_dir.is_dir() and any(run_dir.iterdir())
        _LOG.info("final training %d/%d: seed %d in %s%s", k + 1, n_seeds, seed, run_dir, " (resuming)" if resume else "")
        result = trainable.train(trainable.prepare(config, run_dir=run_dir, seed=seed, resume=resume), None)
        value = float(result.get("metrics", {}).get(metric, math.nan))
        runs.append(
            {
                "seed": seed,
                "value": value,
                "run_dir": str(run_dir),
                "metrics": {k2: float(v) for k2, v in result.get("metrics", {}).items() if isinstance(v, (int, float))},
            }
        )
    values = [r["value"] for r in runs]
    if only is not None:
        return {"study": cfg.name, "trial": best["trial"], "metric": metric, "runs": runs}
    summary = {
        "study": cfg.name,
        "trial": best["trial"],
        "metric": metric,
        "direction": cfg.directions[0],
        "params": best["params"],
        "paths": best["paths"],
        "config": config,
        "runs": runs,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }
    write_json(cfg.study_dir / "best" / "summary.json", summary)
    if render:
        report(cfg, study, storage=storage)
    return summary


def install_best(
    cfg: StudyConfig,
    summary: dict[str, tp.Any],
    target: str | Path,
    *,
    seed: int | None = None,
    evaluation: tp.Mapping[str, tp.Any] | None = None,
    ensemble: bool = False,
) -> Path:
    """Install the final training's best seed of an ``fspnet`` encoder study as pre-trained networks.

    Args:
        cfg: the study (its trainable must be ``fspnet``, stage ``encoder``).
        summary: what :func:`train_best` returned (or ``best/summary.json``).
        target: the folder, e.g. ``fspnet/pretrained``.
        seed: install this seed's run instead of the one with the best metric (e.g. the
            one that was evaluated).
        evaluation: its held-out evaluation (``summary.json`` of ``python -m fspnet.evaluate``),
            installed as ``evaluation.json``.
        ensemble: install every seed with a finite value as one ensemble predicting their mean
            (that seed's run leads it: its run directory files are installed).

    Returns:
        ``target``.

    Raises:
        HpoError: when the study does not train fspnet encoders, or the run cannot be installed.
    """
    from fspnet.errors import DataError
    from fspnet.pretrained import install

    stage = (summary.get("config") or cfg.base_config).get("stage")
    if cfg.trainable != "fspnet" or stage != "encoder":
        raise HpoError(
            f"{cfg.path}: --install needs an fspnet encoder study (pre-trained networks are an encoder with its "
            f"decoder); this one trains {cfg.trainable!r} stage {stage!r}"
        )
    sign = 1.0 if summary["direction"] == "minimize" else -1.0
    finite = [r for r in summary["runs"] if math.isfinite(r["value"])]
    if not finite:
        raise HpoError(f"{cfg.study_dir / 'best' / 'summary.json'}: no seed has a finite {summary['metric']}; nothing to install")
    chosen = min(finite, key=lambda r: sign * r["value"])
    if seed is not None:
        matching = [r for r in summary["runs"] if int(r["seed"]) == seed]
        if not matching:
            raise HpoError(
                f"{cfg.study_dir / 'best' / 'summary.json'}: the final training has no seed {seed}; "
                f"seeds {[r['seed'] for r in summary['runs']]}"
            )
        chosen = matching[0]
    run_dir = Path(chosen["run_dir"])
    origin = {
        "made_by": "python -m hpo.train_best --install",
        **_study_origin(cfg.path, summary),
        "seed": chosen["seed"],
        "value": chosen["value"],
    }
    members = [Path(r["run_dir"]) for r in finite if r is not chosen] if ensemble else []
    if ensemble and not members:
        raise HpoError(
            f"{cfg.study_dir / 'best' / 'summary.json'}: an ensemble needs two seeds with a finite value; train more (--seeds)"
        )
    if members:
        origin["ensemble_seeds"] = [chosen["seed"], *(r["seed"] for r in finite if r is not chosen)]
    decoder_run = Path(json.loads((run_dir / "config.json").read_text())["encoder"]["decoder_run"])
    decoder_summary = decoder_run.parent / "summary.json"  # the decoder is another study's final training
    if decoder_summary.is_file():
        dec = json.loads(decoder_summary.read_text())
        seed = next((r["seed"] for r in dec.get("runs", []) if Path(r["run_dir"]).resolve() == decoder_run.resolve()), None)
        origin["decoder"] = {**_study_origin(None, dec), "seed": seed}
    try:
        return install(run_dir, target, origin=origin, evaluation=evaluation, members=members)
    except DataError as e:
        raise HpoError(f"cannot install {run_dir}: {e}") from None


def _study_origin(study_file: Path | None, s: dict[str, tp.Any]) -> dict[str, tp.Any]:
    out = {
        "study": s["study"],
        "trial": s["trial"],
        "params": s["params"],
        "paths": s.get("paths", {}),
        "metric": s["metric"],
        "direction": s.get("direction"),
        "seeds": {str(r["seed"]): r["value"] for r in s["runs"]},
        "mean": s["mean"],
        "std": s["std"],
    }
    if study_file is not None:  # relative to the working directory (the checkout) when inside it, as the run dirs
        here, path = Path.cwd().resolve(), Path(study_file).resolve()
        out["study_file"] = str(path.relative_to(here) if path.is_relative_to(here) else path)
    return out


def _read_evaluation(path: str) -> dict[str, tp.Any]:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise HpoError(f"--evaluation {path}: cannot read the evaluation summary ({e})") from None
    if not isinstance(value, dict):
        raise HpoError(f"--evaluation {path}: not an evaluation summary (a JSON object)")
    return value


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m hpo.train_best`` / ``hpo-train-best``."""
    parser = argparse.ArgumentParser(prog="hpo-train-best", description="Retrain a study's best parameters with several seeds.")
    parser.add_argument("--study", required=True, help="study YAML")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: train_best.seeds, else 3)")
    parser.add_argument(
        "--seed-index",
        type=int,
        default=None,
        metavar="K",
        help="train only the K-th seed (0-based) and write no summary: seeds in parallel; rerun without it to summarise",
    )
    parser.add_argument("--storage", default=None, help="storage URL replacing the file's (default $HPO_STORAGE)")
    parser.add_argument(
        "--install",
        metavar="DIR",
        default=None,
        help="install the best seed (fspnet encoder studies) as pre-trained networks into DIR, e.g. fspnet/pretrained",
    )
    parser.add_argument(
        "--install-seed",
        type=int,
        default=None,
        metavar="SEED",
        help="with --install: install this seed's run (default: the seed with the best metric)",
    )
    parser.add_argument(
        "--evaluation",
        metavar="SUMMARY_JSON",
        default=None,
        help="with --install: a held-out evaluation of that run (fspnet.evaluate's summary.json), installed as evaluation.json",
    )
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="with --install: install every seed as one ensemble that predicts their mean (--install-seed leads it)",
    )
    parser.add_argument("--log-level", default="INFO")
    add_override_arguments(parser, search=False)  # the study the workers ran with their --set
    args = parser.parse_args(argv)
    if (args.install_seed is not None or args.evaluation or args.ensemble) and not args.install:
        parser.error("--install-seed, --evaluation and --ensemble need --install DIR")
    if args.seed_index is not None and args.install:
        parser.error("--seed-index trains one seed and writes no summary; install from a run without it")
    args.storage = storage_url(args.storage)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    installed = None
    try:
        cfg = load_study_config(args.study, storage=args.storage, overrides=override_list(args))
        evaluation = _read_evaluation(args.evaluation) if args.evaluation else None  # before hours of training
        s = train_best(cfg, seeds=args.seeds, storage=args.storage, only=args.seed_index)
        if args.seed_index is not None:
            (r,) = s["runs"]
            print(f"{cfg.name}: seed {r['seed']} of trial {s['trial']}: {s['metric']} = {r['value']:.5g}  ({r['run_dir']})")
            return 0
        if args.install:
            installed = install_best(cfg, s, args.install, seed=args.install_seed, evaluation=evaluation, ensemble=args.ensemble)
    except (HpoError, ValueError) as e:
        print(f"hpo-train-best: error: {e}", file=sys.stderr)
        return 2
    print(
        f"{cfg.name}: best params of trial {s['trial']} over {len(s['runs'])} seeds: "
        f"{s['metric']} = {s['mean']:.5g} ± {s['std']:.3g}"
    )
    for r in s["runs"]:
        print(f"  seed {r['seed']}: {r['value']:.5g}  ({r['run_dir']})")
    print(f"report: {cfg.study_dir / 'report.html'}")
    if installed is not None:
        print(f"installed into {installed} (see {installed / 'origin.json'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
