"""hpo: Optuna studies around any trainable, from a YAML study file.

``python -m hpo.run`` runs trials (many processes may share one study), ``hpo.collate``
gathers artifacts, ``hpo.report`` renders a self-contained HTML report and
``hpo.train_best`` retrains the best parameters with several seeds. It knows nothing of
Slurm; :mod:`slurm` launches workers (``python -m slurm.worker``) and hands them its hooks
explicitly (``hpo.run.main(hooks_factory=...)``).

Example:
    >>> from hpo import load_study_config, run_study  # doctest: +SKIP
    >>> run_study("studies/quickstart.yaml", n_trials=8)
"""

from __future__ import annotations

from hpo.errors import HpoError, StudyConfigError, TrainableError
from hpo.space import TuneParam, parse_tune_params
from hpo.study import (
    StudyConfig,
    create_or_load_study,
    load_study_config,
    make_pruner,
    make_sampler,
    make_storage,
    mask_url,
    open_study,
)
from hpo.trainables import Trainable, get_trainable

_LAZY = {
    "Objective": "hpo.objective",
    "TrialHook": "hpo.objective",
    "TrialOutcome": "hpo.objective",
    "RunSummary": "hpo.run",
    "Worker": "hpo.run",
    "resume_trial": "hpo.run",
    "run_study": "hpo.run",
}


def __getattr__(name: str) -> object:
    # hpo.run and hpo.objective load lazily so that ``python -m hpo.run`` does not import itself twice.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")


__all__ = [
    "HpoError",
    "Objective",
    "RunSummary",
    "StudyConfig",
    "StudyConfigError",
    "Trainable",
    "TrainableError",
    "TrialHook",
    "TrialOutcome",
    "TuneParam",
    "Worker",
    "create_or_load_study",
    "get_trainable",
    "load_study_config",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "mask_url",
    "open_study",
    "parse_tune_params",
    "resume_trial",
    "run_study",
]
