"""``python -m hpo.collate``: gather per-trial plots and the top-k weights into ``collated/``.

File names start with the metric value, then the trial number, then (with
``append_params``) ``name=value`` pairs, then the original name, e.g.
``0.01234_trial7_lr=0.00123_width=64_loss_curve.png``, so a directory listing sorts by
result. Only the weights of the ``keep_top_k`` best trials are kept in ``collated/``; the
weights inside the run directories of pruned and failed trials are deleted.

Collation is idempotent and safe while workers are running: it takes a lock, copies each file
atomically (temporary name, then rename), skips files that are up to date, never touches
RUNNING trials, and removes only files it created itself (listed in ``.manifest.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import shutil
import sys
import typing as tp
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo._features import feasible
from hpo._heartbeat import reap_dead_trials
from hpo.errors import HpoError
from hpo.study import (
    StudyConfig,
    _file_lock,
    bind_study_dir,
    load_study_config,
    open_study,
    storage_url,
)
from runtools.io import atomic_path, write_json

__all__ = [
    "PLOT_PATTERNS", "TRIAL_RECORD", "WEIGHT_PATTERNS", "CollateSummary", "best_params", "collate", "collated_name", "main",
    "ranked_trials",
]  # fmt: skip

_LOG = logging.getLogger(__name__)

PLOT_PATTERNS = ("*.png", "*.svg", "*.pdf")
#: Weight files: best weights (kept for the top k) and checkpoints (never collated).
WEIGHT_PATTERNS = ("*.safetensors",)
CHECKPOINT_PATTERNS = ("*.pt", "*.pth", "*.ckpt")
_MANIFEST = ".manifest.json"


@dataclasses.dataclass
class CollateSummary:
    """What one collation did."""

    copied: int = 0
    up_to_date: int = 0
    removed: int = 0
    trial_weights_removed: int = 0
    top_k: list[int] = dataclasses.field(default_factory=list)


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials, best first: those meeting the study's ``constraints`` before the others,
    then by value (multi-objective: Pareto front first, then by first objective)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    signs = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions]

    def key(t: FrozenTrial) -> tuple[float, ...]:
        return tuple(s * v for s, v in zip(signs, t.values))

    if len(signs) == 1:
        return sorted(done, key=lambda t: (not feasible(t), key(t), t.number))
    front = {t.number for t in study.best_trials}
    return sorted(done, key=lambda t: (not feasible(t), t.number not in front, key(t), t.number))


#: Where a trial records its params, seed and the whole config its trainable received.
TRIAL_RECORD = "trial.json"


def best_params(cfg: StudyConfig, study: optuna.Study) -> dict[str, tp.Any] | None:
    """The best trial's params, their config paths and the whole config it trained with.

    What ``best_params.json`` holds (``None`` before any trial completes): ``params`` by name
    with their dotted ``paths``, the trial's ``seed``, and ``config``, the config the trainable
    received (the study's fixed ``config:`` section, the base config file and the tuned values,
    as read from the trial's ``trial.json``; recomputed from the study file for trials recorded
    before trials kept it, which ``config_source`` says). ``python -m fspnet.train
    --hyperparams best_params.json`` trains exactly that config.
    """
    ranked = ranked_trials(study)
    if not ranked:
        return None
    best = ranked[0]
    paths = {p.name: p.path for p in cfg.tune_params}
    config, seed, source = _trial_config(cfg, best)
    out: dict[str, tp.Any] = {
        "study": cfg.name,
        "trial": best.number,
        "metrics": cfg.metrics,
        "directions": cfg.directions,
        "values": list(best.values),
        "params": dict(best.params),
        "paths": {k: paths[k] for k in best.params if k in paths},
        "trainable": cfg.trainable,
        "seed": seed,
        "config_source": source,
        "config": config,
    }
    if cfg.multi_objective:
        out["pareto_front"] = [{"trial": t.number, "values": list(t.values), "params": dict(t.params)} for t in study.best_trials]
    return out


def _trial_config(cfg: StudyConfig, trial: FrozenTrial) -> tuple[dict[str, tp.Any], int | None, str]:
    """``(config, seed, source)`` of a finished trial: its ``trial.json``, else recomputed."""
    record_path = cfg.trial_dir(trial.number) / TRIAL_RECORD
    record: dict[str, tp.Any] = {}
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        pass
    except json.JSONDecodeError as e:
        _LOG.warning("%s: not valid JSON (%s); recomputing the trial's config from %s", record_path, e, cfg.path)
    seed = record.get("seed", (trial.user_attrs.get("result") or {}).get("seed"))
    if isinstance(record.get("config"), dict):
        return record["config"], seed, str(record_path)
    from hpo.objective import Objective, seed_number, trial_seed

    if seed is None:
        seed = trial_seed(cfg.seed, seed_number(trial))
    config = Objective(cfg).config_for(dict(trial.params), run_dir=cfg.trial_dir(trial.number), seed=int(seed), resume=False)
    return config, int(seed), f"recomputed from {cfg.path} ({record_path} does not hold the config)"


def _fmt(v: tp.Any) -> str:
    if isinstance(v, float):
        text = f"{v:.4g}"
    else:
        text = str(v)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)


def collated_name(trial: FrozenTrial, filename: str, params: list[str] | None) -> str:
    """``<value>_trial<number>[_<name>=<value>...]_<filename>``; pruned trials use their last
    reported value and are marked ``-pruned``."""
    if trial.state == TrialState.COMPLETE:
        value = "_".join(_fmt(v) for v in trial.values)
        tag = f"trial{trial.number}"
    else:
        last = trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else float("nan")
        value, tag = _fmt(float(last)), f"trial{trial.number}-pruned"
    parts = [value, tag]
    for name in params or []:
        if name in trial.params:
            parts.append(f"{name}={_fmt(trial.params[name])}")
    return "_".join(parts + [filename])


def _files(folder: Path, patterns: tp.Iterable[str]) -> list[Path]:
    out: set[Path] = set()
    for pattern in patterns:
        out.update(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))
    return sorted(out)


def _copy_atomic(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless ``dst`` already has the same size and mtime."""
    try:
        s = src.stat()
        d = dst.stat()
        if d.st_size == s.st_size and d.st_mtime_ns == s.st_mtime_ns:
            return False
    except FileNotFoundError:
        if not src.exists():
            return False
    with atomic_path(dst) as tmp:
        shutil.copy2(src, tmp)
    return True


def collate(cfg: StudyConfig, study: optuna.Study | None = None, *, storage: str | None = None) -> CollateSummary:
    """Collate the study's artifacts into ``<output_dir>/<study>/collated``.

    Args:
        cfg: the validated study.
        study: the loaded study (default: opened from ``storage`` or ``cfg.storage``).
        storage: a storage URL replacing the file's.

    Returns:
        Counts of what was copied and removed, and the numbers of the top-k trials.
    """
    if study is None:
        study = open_study(cfg, storage)
    bind_study_dir(cfg, study, storage)
    reap_dead_trials(study)
    out = cfg.study_dir / "collated"
    out.mkdir(parents=True, exist_ok=True)
    summary = CollateSummary()
    with _file_lock(out / ".lock"):
        trials = study.get_trials(deepcopy=False)
        ranked = ranked_trials(study)
        top = {t.number for t in ranked[: cfg.keep_top_k]}
        summary.top_k = [t.number for t in ranked[: cfg.keep_top_k]]
        params = [p.name for p in cfg.tune_params if p.state] if cfg.append_params else None
        wanted: dict[str, Path] = {}
        for t in trials:
            run_dir = cfg.trial_dir(t.number)
            if t.state in (TrialState.PRUNED, TrialState.FAIL):
                for f in _files(run_dir, WEIGHT_PATTERNS + CHECKPOINT_PATTERNS):
                    f.unlink(missing_ok=True)
                    summary.trial_weights_removed += 1
            if t.state not in (TrialState.COMPLETE, TrialState.PRUNED) or not run_dir.is_dir():
                continue
            for f in _files(run_dir, PLOT_PATTERNS):
                wanted[collated_name(t, f.name, params)] = f
            if t.number in top:
                for f in _files(run_dir, WEIGHT_PATTERNS):
                    wanted[collated_name(t, f.name, params)] = f
        for name, src in wanted.items():
            if _copy_atomic(src, out / name):
                summary.copied += 1
            else:
                summary.up_to_date += 1
        manifest_path = out / _MANIFEST
        try:
            previous = json.loads(manifest_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            previous = []
        for name in previous:
            if name not in wanted and "/" not in name:
                if (out / name).exists():
                    (out / name).unlink()
                    summary.removed += 1
        write_json(manifest_path, sorted(wanted))
    _LOG.info(
        "collated %s: %d copied, %d up to date, %d removed; weights of trials %s kept; %d weight files of "
        "pruned/failed trials deleted",
        out,
        summary.copied,
        summary.up_to_date,
        summary.removed,
        summary.top_k,
        summary.trial_weights_removed,
    )
    return summary


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m hpo.collate`` / ``hpo-collate``."""
    parser = argparse.ArgumentParser(prog="hpo-collate", description="Collate a study's plots and top-k weights.")
    parser.add_argument("--study", required=True, help="study YAML")
    parser.add_argument("--storage", default=None, help="storage URL replacing the file's (default $HPO_STORAGE)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    args.storage = storage_url(args.storage)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_study_config(args.study, storage=args.storage, check_trainable=False)
        s = collate(cfg, storage=args.storage)
    except HpoError as e:
        print(f"hpo-collate: error: {e}", file=sys.stderr)
        return 2
    print(
        f"{cfg.study_dir / 'collated'}: {s.copied} copied, {s.up_to_date} up to date, {s.removed} removed; "
        f"top-{cfg.keep_top_k} weights from trials {s.top_k}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
