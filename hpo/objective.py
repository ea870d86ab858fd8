"""One trial: config from the suggestion, training through the trainable, pruning, user attrs.

:class:`Objective` runs a trial that the caller obtained from ``study.ask()`` (or resumed),
and returns a :class:`TrialOutcome` for ``study.tell``. Per-epoch work goes through
:class:`TrialHook` objects, the seam where :mod:`slurm` adds heartbeats and checkpoint-on-
preemption without touching this module.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import inspect
import logging
import math
import os
import sys
import threading
import time
import traceback
import typing as tp
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo._scratch import TrialScratch
from hpo.errors import HpoError
from hpo.space import apply_params, suggest
from hpo.study import StudyConfig
from hpo.trainables import Trainable
from runtools.io import write_json

__all__ = ["Objective", "TrialHook", "TrialInterrupted", "TrialOutcome", "trial_seed"]

_LOG = logging.getLogger(__name__)


class TrialHook:
    """Callbacks around one trial; subclass and override what you need.

    ``on_epoch`` may return ``"stop"`` and/or ``"checkpoint"`` like a trainable callback; the
    requests of every hook and of the pruner are merged and passed to the trainable.
    """

    def on_trial_start(self, trial: optuna.Trial, run_dir: Path, resume: bool) -> None:
        """Called before training starts (or resumes) in ``run_dir``."""

    def on_epoch(self, trial: optuna.Trial, epoch: int, metrics: dict[str, float]) -> tp.Iterable[str] | None:
        """Called after every epoch, after the value was reported to the pruner."""
        return None

    def on_train_end(self, trial: optuna.Trial, result: tp.Any) -> None:
        """Called as soon as the trainable returns, before the outcome is recorded; may raise a
        ``SystemExit`` to leave the trial RUNNING and unrecorded (slurm: preempted, checkpointed)."""

    def on_trial_end(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        """Called after training, before ``study.tell``."""


@dataclasses.dataclass
class TrialOutcome:
    """What :meth:`Objective.run` hands to ``study.tell``.

    Attributes:
        state: COMPLETE, PRUNED or FAIL.
        values: one per objective (``None`` unless COMPLETE).
        result: the trainable's return value (empty on failure).
        error: the exception text of a failed trial.
        traceback: its last frames.
        user_attrs: the trial's user attrs (``result``, ``error``) when the :class:`Objective`
            defers them to the caller's ``tell`` (``defer_user_attrs``); empty otherwise.
    """

    state: TrialState
    values: list[float] | None = None
    result: dict[str, tp.Any] = dataclasses.field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    user_attrs: dict[str, tp.Any] = dataclasses.field(default_factory=dict)


def trial_seed(base_seed: int, number: int) -> int:
    """The trainable's seed for trial ``number``: reproducible, distinct per trial.

    A retry passes the number of the first trial of its chain (see :func:`seed_number`), so it
    repeats the same experiment with the same seed.
    """
    return int(base_seed) + int(number)


def seed_number(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The trial number that seeds ``trial``: the first trial of its retry chain (Optuna's
    ``failed_trial`` system attribute), or its own number."""
    from hpo._heartbeat import FAILED_TRIAL_KEY

    if isinstance(trial, optuna.trial.FrozenTrial):
        attrs = trial.system_attrs
    else:
        attrs = trial.study._storage.get_trial_system_attrs(trial._trial_id)
    first = attrs.get(FAILED_TRIAL_KEY)
    return trial.number if first is None else int(first)


class TrialInterrupted(BaseException):
    """The trainable stopped at ``interrupt`` (``stopped == "interrupted"``) after checkpointing.

    A :class:`BaseException`, like ``KeyboardInterrupt``: the trial did not fail; the worker
    leaves it RUNNING for a resume (``leave_running_on_exit``) or fails it, and stops.
    """


@functools.lru_cache(maxsize=1)
def _static_provenance() -> dict[str, tp.Any]:
    # Git and package versions cost subprocesses: collect once per process.
    import platform
    import socket

    from runtools.provenance import git_commit, mask_argv, package_versions

    return {
        "git": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(), "pid": os.getpid()},
        "argv": mask_argv(sys.argv),
    }


def _gpu() -> dict[str, tp.Any]:
    info: dict[str, tp.Any] = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    torch = sys.modules.get("torch")  # not imported by the trainable: no GPU to describe, and no import cost
    if torch is not None and torch.cuda.is_available():
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def provenance(seed: int) -> dict[str, tp.Any]:
    """Provenance of a trial: seed, git commit, package versions, host, Slurm ids, GPU (the same
    fields as :func:`runtools.provenance.collect_provenance`)."""
    import datetime as dt

    from runtools.provenance import SLURM_VARIABLES

    prov = dict(_static_provenance())
    prov.update(
        seed=seed,
        time_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        slurm={k: os.environ[k] for k in SLURM_VARIABLES if k in os.environ},
        gpu=_gpu(),
    )
    return prov


class Objective:
    """Runs trials of one study with one trainable.

    Args:
        cfg: the validated study.
        trainable: overrides the study's trainable (tests, notebooks).
        hooks: :class:`TrialHook` objects called around every trial.
        worker: this worker's id, recorded with each trial.
        interrupt: see :attr:`interrupt`.
        defer_user_attrs: leave the ``result``/``error`` user attrs in ``TrialOutcome.user_attrs``
            instead of writing them, so that the caller writes them together with its ``tell``
            (one journal append instead of two, see :func:`hpo.study.coalesced_writes`).

    Example:
        >>> obj = Objective(load_study_config("studies/quickstart.yaml"))  # doctest: +SKIP
        >>> trial = study.ask(); outcome = obj.run(trial); study.tell(trial, outcome.values, outcome.state)
    """

    def __init__(
        self,
        cfg: StudyConfig,
        trainable: Trainable | None = None,
        hooks: tp.Sequence[TrialHook] = (),
        worker: str = "",
        interrupt: threading.Event | None = None,
        defer_user_attrs: bool = False,
    ) -> None:
        self.cfg = cfg
        self.worker = worker
        self.defer_user_attrs = defer_user_attrs
        #: Set (e.g. by a signal handler) to make the trainable checkpoint at its next batch and return.
        self.interrupt = interrupt if interrupt is not None else threading.Event()
        self.trainable = trainable or cfg.get_trainable()
        self.hooks = list(hooks)
        base = cfg.base_config
        self.base_config = self.trainable.quick_scan(base, cfg.quick_scan) if cfg.quick_scan else base

    def params_for(self, trial: optuna.trial.BaseTrial) -> dict[str, tp.Any]:
        """Suggest every tuned parameter (``state: true``) through ``trial``."""
        return {p.name: suggest(trial, p) for p in self.cfg.tune_params if p.state}

    def config_for(self, params: dict[str, tp.Any], *, run_dir: Path, seed: int, resume: bool) -> dict[str, tp.Any]:
        """The trainable config of a trial with ``params`` (by name) applied at their paths."""
        config = apply_params(self.base_config, self.cfg.tune_params, params)
        return self.trainable.prepare(config, run_dir=run_dir, seed=seed, resume=resume)

    def run(self, trial: optuna.Trial, resume: bool = False) -> TrialOutcome:
        """Train one trial and record its user attrs; never raises for a failing trainable.

        With ``scratch`` on in the study (:mod:`hpo._scratch`) the trainable runs in the node's
        scratch folder: a resume first restores the shared copy there, an interruption copies
        the whole scratch folder to the shared one before any hook's ``on_train_end`` (which may
        requeue the job), and the end of the trial copies the ``copy_back`` files back. Hooks
        always see the shared trial folder.

        Args:
            trial: a RUNNING trial, from ``study.ask()`` or resumed by number.
            resume: continue from the checkpoint in the trial's run directory.
        """
        cfg = self.cfg
        run_dir = cfg.trial_dir(trial.number)
        run_dir.mkdir(parents=True, exist_ok=True)
        seed = trial_seed(cfg.seed, seed_number(trial))
        t0 = time.perf_counter()
        pruned = False
        values_seen: list[float] = []
        single = not cfg.multi_objective
        scratch: TrialScratch | None = None

        def callback(epoch: int, metrics: dict[str, float]) -> set[str]:
            nonlocal pruned
            requests: set[str] = set()
            if single:
                value = _metric(metrics, cfg.metrics[0])
                values_seen.append(value)
                if math.isfinite(value):
                    trial.report(value, int(epoch))
            for hook in self.hooks:
                requests |= set(hook.on_epoch(trial, int(epoch), metrics) or ())
            if single and trial.should_prune():
                pruned = True
                requests.add("stop")
            return requests

        try:
            params = self.params_for(trial)
            record: dict[str, tp.Any] = {}
            if cfg.scratch.enabled:
                scratch = TrialScratch(cfg.scratch, cfg.name, run_dir)
                scratch.begin(resume)
                config, staged = scratch.stage(self.config_for(params, run_dir=scratch.run_dir, seed=seed, resume=resume))
                # trial.json keeps the shared paths: what report, collate and train_best rerun.
                shared_config = self.config_for(params, run_dir=run_dir, seed=seed, resume=resume)
                record = {"scratch": scratch.record(staged)}
            else:
                config = shared_config = self.config_for(params, run_dir=run_dir, seed=seed, resume=resume)
            if resume:
                trial.set_user_attr("resumed", int(trial.user_attrs.get("resumed", 0)) + 1)
            write_json(
                run_dir / "trial.json",
                {
                    "study": cfg.name,
                    "number": trial.number,
                    "params": params,
                    "paths": {p.name: p.path for p in cfg.tune_params if p.name in params},
                    "seed": seed,
                    "config": shared_config,
                    **record,
                },
                # Not fsynced: result.json (durable; its folder fsync also commits this rename)
                # is the record, the storage holds the params, a resume rewrites this file and
                # collate recomputes the config when a crash left it missing or empty.
                durable=False,
            )  # best_params.json carries it
            for hook in self.hooks:
                hook.on_trial_start(trial, run_dir, resume)
            result = self._train(config, callback)
            if scratch is not None and (self.interrupt.is_set() or _stopped(result) == "interrupted"):
                scratch.save_checkpoint()  # to shared storage first: a hook may requeue the job next
            for hook in self.hooks:
                hook.on_train_end(trial, result)
            if not isinstance(result, dict):
                raise HpoError(
                    f"trainable {self.trainable.name!r} returned {type(result).__name__}, expected a dict with 'metrics'"
                )
            if result.get("stopped") == "interrupted":
                raise TrialInterrupted(f"trial {trial.number}: interrupted after a checkpoint")
            outcome = self._outcome(result, pruned, values_seen)
        except optuna.TrialPruned:
            outcome = TrialOutcome(TrialState.PRUNED)
        except Exception as e:  # a failing trial is recorded and the study goes on
            _LOG.warning("trial %d failed: %s: %s", trial.number, type(e).__name__, e)
            outcome = TrialOutcome(
                TrialState.FAIL, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=-8)[-4000:]
            )
        except BaseException:  # interrupted, preempted, Ctrl-C: the trial may resume, on any node
            if scratch is not None:
                _keep_on_shared(scratch, trial.number)
            raise
        finally:
            _release_gpu_memory()
        if scratch is not None:
            try:
                scratch.finish()
            except OSError as e:  # the outcome is recorded all the same; the scratch copy stays
                _LOG.warning("trial %d: copying %s back to %s failed: %s", trial.number, scratch.run_dir, run_dir, e)
        self._record(trial, outcome, time.perf_counter() - t0, seed)
        for hook in self.hooks:
            hook.on_trial_end(trial, outcome)
        return outcome

    def _train(self, config: dict[str, tp.Any], callback: tp.Callable[[int, dict[str, float]], set[str]]) -> tp.Any:
        # Trainables take ``interrupt`` (bounded-time checkpoint); one that does not yet only
        # stops at epoch ends through the callback.
        train = self.trainable.train
        try:
            params = list(inspect.signature(train).parameters.values())
        except (TypeError, ValueError):
            params = []
        if any(p.name == "interrupt" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return train(config, callback, interrupt=self.interrupt)
        return train(config, callback)

    def _outcome(self, result: dict[str, tp.Any], pruned: bool, values_seen: list[float]) -> TrialOutcome:
        if pruned:
            return TrialOutcome(TrialState.PRUNED, result=result)
        metrics = result.get("metrics", {})
        values = []
        for name in self.cfg.metrics:
            if name in metrics:
                values.append(float(metrics[name]))
            elif values_seen and len(self.cfg.metrics) == 1:
                values.append(values_seen[-1])
            else:
                raise HpoError(
                    f"{self.cfg.path}: metric {name!r} is not in the trainable's result metrics "
                    f"({', '.join(sorted(metrics)) or 'none'}); fix metric(s) in the study file"
                )
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            return TrialOutcome(TrialState.FAIL, result=result, error=f"non-finite objective value {bad}")
        return TrialOutcome(TrialState.COMPLETE, values=values, result=result)

    def _record(self, trial: optuna.Trial, outcome: TrialOutcome, wall_s: float, seed: int) -> None:
        # One user attr, so one storage write per trial; the full provenance goes to result.json.
        prov = provenance(seed)
        run_dir = self.cfg.trial_dir(trial.number)
        summary: dict[str, tp.Any] = {
            "run_dir": str(run_dir),
            "seed": seed,
            "worker": self.worker,
            "wall_time_s": round(wall_s, 3),
            "provenance": {
                "host": prov["host"]["hostname"],
                "pid": prov["host"]["pid"],
                "git": prov["git"]["commit"],
                "slurm": prov["slurm"],
                "gpu": prov["gpu"].get("devices") or prov["gpu"].get("cuda_visible_devices"),
                "time_utc": prov["time_utc"],
            },
        }
        result = outcome.result
        if result:
            summary.update({k: _jsonable(result[k]) for k in ("epochs", "best_epoch", "stopped") if k in result})
            summary["metrics"] = {k: _jsonable(v) for k, v in (result.get("metrics") or {}).items()}
        if outcome.traceback:
            summary["traceback"] = outcome.traceback
        outcome.user_attrs = {"result": summary, **({"error": outcome.error} if outcome.error else {})}
        if not self.defer_user_attrs:
            for key, value in outcome.user_attrs.items():
                trial.set_user_attr(key, value)
            outcome.user_attrs = {}
        write_json(
            run_dir / "result.json",
            {
                "number": trial.number,
                "state": outcome.state.name,
                "values": outcome.values,
                "error": outcome.error,
                **summary,
                "provenance": prov,
            },
        )


def _stopped(result: tp.Any) -> tp.Any:
    return result.get("stopped") if isinstance(result, dict) else None


def _keep_on_shared(scratch: TrialScratch, number: int) -> None:
    """Copy an interrupted trial's scratch folder to its shared folder, then remove it."""
    try:
        scratch.save_checkpoint()  # a no-op for files already copied before the hooks ran
    except OSError as e:
        _LOG.error("trial %d: could not copy its checkpoint from %s to %s: %s", number, scratch.run_dir, scratch.shared_dir, e)
        return  # keep the scratch copy: it is the only one
    scratch.remove()


def _metric(metrics: dict[str, float], name: str) -> float:
    if name not in metrics:
        raise HpoError(
            f"metric {name!r} is not among the trainable's epoch metrics ({', '.join(sorted(metrics))}); "
            "fix metric(s) in the study file"
        )
    return float(metrics[name])


def _jsonable(v: tp.Any) -> tp.Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if hasattr(v, "item"):
        return v.item()
    return v


def _release_gpu_memory() -> None:
    """Free the finished trial's GPU memory for the next one (a no-op without CUDA, where a full
    ``gc.collect`` would only cost time)."""
    torch = sys.modules.get("torch")  # a trainable that never imported torch holds no GPU memory
    if torch is not None and torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
