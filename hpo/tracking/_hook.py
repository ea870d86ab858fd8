"""The :class:`~hpo.objective.TrialHook` that feeds a study's trackers."""

from __future__ import annotations

import functools
import logging
import os
import typing as tp
from pathlib import Path

import optuna

from hpo.objective import TrialHook, TrialOutcome
from hpo.tracking._base import Tracker, TrialRun, make_trackers

__all__ = ["TrackingHook"]

_LOG = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _commit() -> str:
    from runtools.provenance import git_commit

    c = git_commit()
    return f"{c['commit']}{'-dirty' if c.get('dirty') else ''}" if c.get("commit") else "unknown"


def provenance_tags(number: int, worker: str, environ: tp.Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags of a trial's run: ``trial``, ``worker``, ``git_commit`` and the Slurm ids that are set."""
    from runtools.provenance import SLURM_VARIABLES

    env = os.environ if environ is None else environ
    tags = {"trial": str(number), "worker": worker, "git_commit": _commit()}
    tags.update({k.lower(): env[k] for k in SLURM_VARIABLES if env.get(k)})
    return tags


class TrackingHook(TrialHook):
    """Mirrors each trial into the study's trackers; a tracker that fails is logged and skipped
    for the rest of the trial (tracking never fails a trial).

    Args:
        section: the validated ``tracking:`` section of the study file.
        study: the study name.
        study_dir: ``<output_dir>/<study>``.
        worker: this worker's id (a tag of every run).
        trackers: use these instead of building them from ``section`` (tests).
    """

    def __init__(
        self,
        section: dict[str, tp.Any] | None,
        study: str,
        study_dir: Path,
        worker: str = "",
        trackers: tp.Sequence[Tracker] | None = None,
    ) -> None:
        self.study, self.study_dir, self.worker = study, Path(study_dir), worker
        self.trackers = list(trackers) if trackers is not None else make_trackers(section, self.study_dir)
        self._live: list[Tracker] = []
        self._run_dir: Path | None = None

    def _call(self, tracker: Tracker, what: str, *args: tp.Any, **kwargs: tp.Any) -> None:
        try:
            getattr(tracker, what)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 (tracking must never fail the trial)
            _LOG.warning(
                "tracking.%s: %s failed (%s: %s); not tracking the rest of this trial", tracker.name, what, type(e).__name__, e
            )
            if tracker in self._live:
                self._live.remove(tracker)

    def on_trial_start(self, trial: optuna.Trial, run_dir: Path, resume: bool) -> None:
        self._run_dir = Path(run_dir)
        run = TrialRun(
            self.study, trial.number, dict(trial.params), provenance_tags(trial.number, self.worker), self._run_dir, resume
        )
        self._live = list(self.trackers)
        for t in list(self._live):
            self._call(t, "start", run)

    def on_epoch(self, trial: optuna.Trial, epoch: int, metrics: dict[str, float]) -> None:
        for t in list(self._live):
            self._call(t, "log_epoch", epoch, metrics)

    def on_trial_end(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        from hpo.collate import PLOT_PATTERNS, WEIGHT_PATTERNS

        if self._run_dir is None:  # the config could not be built: no run was started
            return
        plots = sorted(f for p in PLOT_PATTERNS for f in self._run_dir.glob(p))
        weights = sorted(f for p in WEIGHT_PATTERNS for f in self._run_dir.glob(p))
        for t in list(self._live):
            self._call(t, "finish", outcome.state.name, outcome.values, plots, weights, error=outcome.error)
        self._live, self._run_dir = [], None
