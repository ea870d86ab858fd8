"""Experiment tracking for studies on clusters without internet (off by default).

A study file switches trackers on in its ``tracking:`` section::

    tracking:
      mlflow: {}                  # SQLite store <output_dir>/<study>/mlflow.db, one run per trial
      tensorboard: {}             # <output_dir>/<study>/tensorboard/trial-<n>/
      wandb: {mode: offline}      # <output_dir>/<study>/wandb/, `wandb sync` later

:class:`TrackingHook` (a :class:`~hpo.objective.TrialHook`, added by :class:`hpo.run.Worker`)
feeds every tracker: parameters and provenance tags at the start, metrics after each epoch, and
the outcome with the plots and best weights at the end. One tracker per private module, behind
the tiny :class:`Tracker` ABC.
"""

from __future__ import annotations

from hpo.tracking._base import (
    TRACKERS,
    Tracker,
    TrialRun,
    check_tracking,
    make_trackers,
)

__all__ = ["TRACKERS", "Tracker", "TrackingHook", "TrialRun", "check_tracking", "make_trackers"]


def __getattr__(name: str) -> object:
    if name == "TrackingHook":  # imports hpo.objective, which imports hpo.study: load it on use
        from hpo.tracking._hook import TrackingHook

        return TrackingHook
    raise AttributeError(name)
