"""The per-trial side of the study-file features: constraints and retries of trials that raise.

:class:`FeatureHook` is added by :class:`hpo.run.Worker` when the study file has ``constraints``
or ``max_retries``. It records each trial's constraint values before ``study.tell``, as the user
attribute ``constraints`` (a list) and, with Optuna >= 5, through ``trial.set_constraint`` (named
``<metric><=<max>`` / ``<metric>>=<min>``), where TPE, NSGA-II/III and GP read them; with Optuna 4
the samplers' ``constraints_func`` reads the user attribute. It
enqueues a retry with the same parameters when the *training* raised — not when the trial was
pruned, gave a non-finite value, its configuration could not be built, or the error says the
configuration is wrong (a bad configuration fails the same way every time).
"""

from __future__ import annotations

import logging
import math
import time
import typing as tp
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo._features import (
    CONSTRAINTS_ATTR,
    NATIVE_CONSTRAINTS,
    Features,
    constraint_keys,
    constraint_values,
)
from hpo._heartbeat import enqueue_retry
from hpo.objective import TrialHook, TrialOutcome

if tp.TYPE_CHECKING:
    from hpo.study import StudyConfig

__all__ = ["RETRY_REASON_ATTR", "FeatureHook", "TrialLogHook", "feature_hooks"]

_LOG = logging.getLogger(__name__)

#: User attribute of a trial whose training raised and that was retried: the exception text.
RETRY_REASON_ATTR = "retried_because"
#: Errors that say the configuration is wrong (raised by hpo or the trainable's config checks): never retried.
_CONFIG_ERRORS = frozenset({"HpoError", "StudyConfigError", "TrainableError", "ConfigError", "NetworkConfigError", "DataError"})


class FeatureHook(TrialHook):
    """Records constraint values and retries trials whose training raised.

    Args:
        features: the study file's validated features (``constraints``, ``max_retries``).
    """

    def __init__(self, features: Features) -> None:
        self.features = features
        self._last: dict[str, float] = {}
        self._training = False

    def on_trial_start(self, trial: optuna.Trial, run_dir: Path, resume: bool) -> None:
        self._last = {}
        self._training = True  # the config was built: a failure from now on is the training's

    def on_epoch(self, trial: optuna.Trial, epoch: int, metrics: dict[str, float]) -> None:
        self._last = dict(metrics)

    def on_train_end(self, trial: optuna.Trial, result: tp.Any) -> None:
        self._training = False

    def on_trial_end(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        raised, self._training = self._training, False
        f = self.features
        if f.constraints and outcome.state in (TrialState.COMPLETE, TrialState.PRUNED):
            metrics = dict(self._last)
            result = outcome.result or {}
            metrics.update({k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            metrics.update(result.get("metrics") or {})
            values = constraint_values(f.constraints, metrics)
            trial.set_user_attr(CONSTRAINTS_ATTR, [v if math.isfinite(v) else 1e300 for v in values])
            if NATIVE_CONSTRAINTS:  # Optuna >= 5: the samplers read trial.constraints themselves
                for key, v in zip(constraint_keys(f.constraints), values):
                    trial.set_constraint(key, v if math.isfinite(v) else 1e300)
            if any(not math.isfinite(v) for v in values):
                missing = [c["metric"] for c in f.constraints if c["metric"] not in metrics]
                _LOG.warning(
                    "trial %d: constraint metric(s) %s not reported by the trainable (have %s); counted as violated",
                    trial.number,
                    missing,
                    ", ".join(sorted(metrics)) or "none",
                )
        config_error = (outcome.error or "").partition(":")[0] in _CONFIG_ERRORS
        if f.max_retries and outcome.state == TrialState.FAIL and raised and not config_error:
            frozen = trial.study._storage.get_trial(trial._trial_id)
            if enqueue_retry(trial.study, frozen, f.max_retries):
                trial.set_user_attr(RETRY_REASON_ATTR, outcome.error or "raised")
                _LOG.warning("trial %d raised (%s); its parameters are enqueued again", trial.number, outcome.error)


class TrialLogHook(TrialHook):
    """Logs one line per finished trial: number, state, value(s), parameters, epochs, duration.

    It goes through :mod:`logging` (INFO, logger ``hpo.trials``), which the worker routes through
    tqdm while a progress bar shows, and which prints as is with ``--no-progress`` (sbatch logs).
    """

    log = logging.getLogger("hpo.trials")

    def __init__(self) -> None:
        self._t0: float | None = None

    def on_trial_start(self, trial: optuna.Trial, run_dir: Path, resume: bool) -> None:
        self._t0 = time.monotonic()

    def on_trial_end(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        t0, self._t0 = self._t0, None
        self.log.info("%s", trial_line(trial.number, outcome, trial.params, None if t0 is None else time.monotonic() - t0))


def trial_line(number: int, outcome: TrialOutcome, params: tp.Mapping[str, tp.Any], duration_s: float | None) -> str:
    """``trial 3 COMPLETE value=0.1234 epochs=9 1.2s lr=0.01 momentum=0.5`` (``error=…`` when failed)."""
    parts = [f"trial {number}", outcome.state.name]
    if outcome.values:
        parts.append("value=" + ",".join(f"{v:.6g}" for v in outcome.values))
    epochs = (outcome.result or {}).get("epochs")
    if epochs is not None:
        parts.append(f"epochs={epochs}")
    if duration_s is not None:
        parts.append(f"{duration_s:.1f}s")
    parts += [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()]
    if outcome.error:
        parts.append(f"error={outcome.error.splitlines()[0][:200]}")
    return " ".join(parts)


def feature_hooks(cfg: StudyConfig, worker: str) -> list[TrialHook]:
    """The hooks a worker adds: :class:`TrialLogHook` (always), :class:`FeatureHook` (constraints,
    ``max_retries``), :class:`hpo._artifacts.ArtifactHook` (``artifacts: true``) and
    :class:`hpo.tracking.TrackingHook` (``tracking:``), when used."""
    f = cfg.features
    hooks: list[TrialHook] = [TrialLogHook()]
    if f.constraints or f.max_retries:
        hooks.append(FeatureHook(f))
    if f.artifacts:
        from hpo._artifacts import ArtifactHook

        hooks.append(ArtifactHook(cfg.study_dir))
    if f.tracking:
        from hpo.tracking._hook import TrackingHook

        hooks.append(TrackingHook(f.tracking, cfg.name, cfg.study_dir, worker))
    return hooks
