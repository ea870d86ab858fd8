"""The tracker ABC, the ``tracking:`` study-file section and its registry.

A tracker mirrors each trial into an experiment tracker that works offline on a compute node: one
run per trial, grouped under its study, with the trial's parameters, per-epoch metrics, provenance
tags, its plots and best weights, and its final state (pruned and failed trials marked as such).
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import importlib.util
import typing as tp
from pathlib import Path

from runtools import schema

__all__ = ["TRACKERS", "Tracker", "TrialRun", "check_tracking", "make_trackers"]


@dataclasses.dataclass
class _NoOptions:
    """A tracker without options."""


@dataclasses.dataclass
class TrialRun:
    """What a tracker knows of the trial it records.

    Attributes:
        study: the study name (MLflow experiment, W&B group).
        number: the Optuna trial number.
        params: the tuned parameters of the trial.
        tags: provenance (``trial``, ``worker``, ``git_commit``, Slurm ids...), all strings.
        run_dir: the trial's run directory.
        resume: the trial resumes from a checkpoint (continue its run where the tracker can).
    """

    study: str
    number: int
    params: dict[str, tp.Any]
    tags: dict[str, str]
    run_dir: Path
    resume: bool = False


class Tracker(abc.ABC):
    """One experiment tracker, for the trials of one worker (one :meth:`start` … :meth:`finish` per trial).

    Args:
        study_dir: ``<output_dir>/<study>``; default locations live under it.
        options: the tracker's mapping from the study file (checked by :meth:`check_options`).
    """

    #: Name in the study file's ``tracking:`` section.
    name: tp.ClassVar[str] = ""
    #: Importable module the tracker needs, and the pip extra that installs it.
    module: tp.ClassVar[str] = ""
    extra: tp.ClassVar[str] = ""
    #: The options' schema (a dataclass of :mod:`runtools.schema` fields): valid keys, types, defaults, docs.
    Options: tp.ClassVar[type] = _NoOptions

    def __init__(self, study_dir: Path, options: dict[str, tp.Any]) -> None:
        self.study_dir = Path(study_dir)
        self.options = dict(options)

    @classmethod
    def check_options(cls, options: dict[str, tp.Any]) -> list[tuple[str, str]]:
        """``(key, message)`` problems of ``options`` (keys relative to ``tracking.<name>``), checked
        against :attr:`Options` by :func:`runtools.schema.build`."""
        errors: list[str] = []
        schema.build(options, cls.Options, errors)
        return [(key, message) for key, _, message in (e.partition(": ") for e in errors)]

    @abc.abstractmethod
    def start(self, run: TrialRun) -> None:
        """Open (or, on resume, reopen) the run of a trial and record its parameters and tags."""

    @abc.abstractmethod
    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Record one epoch's metrics at step ``epoch``."""

    @abc.abstractmethod
    def finish(
        self, state: str, values: list[float] | None, plots: list[Path], weights: list[Path], error: str | None = None
    ) -> None:
        """Record the outcome (``COMPLETE``, ``PRUNED`` or ``FAIL`` with its ``error``), the objective
        values and the artifacts, and close the run."""


#: Trackers by study-file name: ``module:class`` loaded only when a study uses them.
TRACKERS: dict[str, str] = {
    "mlflow": "hpo.tracking._mlflow:MLflowTracker",
    "tensorboard": "hpo.tracking._tensorboard:TensorBoardTracker",
    "wandb": "hpo.tracking._wandb:WandbTracker",
}


def _tracker_class(name: str) -> type[Tracker]:
    module, _, cls = TRACKERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def check_tracking(section: tp.Any) -> list[tuple[str, str]]:
    """Validate the ``tracking:`` section; every problem as ``(key_path, message)``.

    ``{mlflow: {...}, tensorboard: {...}, wandb: {mode: offline}}``; a tracker set to ``false`` or
    ``null`` is off, ``true`` or ``{}`` uses its defaults. A tracker whose package is missing is an
    error that names the extra to install.
    """
    if section is None:
        return []
    if not isinstance(section, dict):
        return [("tracking", f"must be a mapping {{{', '.join(TRACKERS)}: options}}, but got {type(section).__name__}")]
    errors: list[tuple[str, str]] = []
    for name, options in section.items():
        where = f"tracking.{name}"
        if name not in TRACKERS:
            errors.append((where, f"unknown tracker; choose one of {', '.join(TRACKERS)}"))
            continue
        if options in (False, None):
            continue
        if options is True:
            options = {}
        if not isinstance(options, dict):
            errors.append((where, f"must be true, false or a mapping of options, but got {options!r}"))
            continue
        cls = _tracker_class(name)
        if importlib.util.find_spec(cls.module) is None:
            errors.append((where, f"the {cls.module} package is not installed; pip install 'fspnet[{cls.extra}]'"))
            continue
        errors += [(f"{where}.{k}", m) for k, m in cls.check_options(options)]
    return errors


def make_trackers(section: dict[str, tp.Any] | None, study_dir: Path) -> list[Tracker]:
    """The trackers switched on in a validated ``tracking:`` section (none by default)."""
    out: list[Tracker] = []
    for name, options in (section or {}).items():
        if options in (False, None):
            continue
        out.append(_tracker_class(name)(study_dir, {} if options is True else options))
    return out
