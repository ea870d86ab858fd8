"""Preemption and walltime: checkpoint the running trial, requeue, resume the *same* trial.

Slurm warns a job before it ends it: ``--signal=USR2@N`` before the walltime, SIGTERM on
preemption (then SIGKILL after ``KillWait``), and submitit's ``job._interrupt()`` sends both.
The flow, wired into every :class:`hpo.run.Worker` under Slurm by :func:`_setup_worker`:

1. :class:`PreemptionHandler` catches SIGUSR2 / SIGTERM and only sets a flag (signal handlers
   must not touch the storage).
2. :class:`PreemptHook` answers the next epoch callback with ``{"checkpoint", "stop"}``, so the
   trainable writes a full checkpoint (model, optimizer, scheduler, RNG, epoch) into the trial's
   run directory and returns.
3. Right after the trainable returns (``TrialHook.on_train_end``) the hook marks the trial
   suspended (it stays RUNNING; the reaper grants it ``suspend_grace_s`` instead of failing
   it), requeues the job on SIGUSR2 (``scontrol requeue``; Slurm requeues preempted jobs
   itself) and ends the worker with :class:`TrialPreempted` — nothing is told to the study.
4. On restart the job has the same :func:`hpo._heartbeat.worker_key`; the hook's trial source
   (:func:`claim_own_trials`) finds the suspended trial and the worker runs it again as the same
   Optuna trial (same number, params and Hyperband bracket) with the trainable's
   ``resume=True``, which continues from the checkpoint. Reported intermediate values stay.

A RUNNING trial owned by this key that was *not* suspended (the previous run of this job was
killed before it could checkpoint) cannot be resumed; it is failed and retried at once (one
killed before its first beat names no owner yet and is left to the reaper).
:meth:`PreemptionHandler.wrap` and :meth:`PreemptionHandler.raise_if_requested` give the same
behaviour to code that calls a trainable without :mod:`hpo.run`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import types
import typing as tp

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo._extensions import register_worker_setup
from hpo._heartbeat import (
    HEARTBEAT_KEY,
    SUSPENDED_KEY,
    HeartbeatHook,
    HeartbeatSettings,
    fail_and_retry,
    owner_of,
    worker_key,
)
from hpo.objective import TrialHook

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "PreemptHook",
    "PreemptionHandler",
    "TrialPreempted",
    "claim_own_trials",
    "requeue_job",
    "suspend_trial",
]

_log = logging.getLogger(__name__)

#: System attribute: how many times the trial was suspended and resumed.
RESUMES_KEY = "hpo:resumes"
#: Exit status of a worker that stopped for preemption after checkpointing (EX_TEMPFAIL).
PREEMPTED_EXIT_CODE = 75

_Callback = tp.Callable[[int, dict[str, float]], tp.Optional[tp.Iterable[str]]]


class TrialPreempted(SystemExit):
    """The worker stops because its job is preempted (exit status :data:`PREEMPTED_EXIT_CODE`).

    A :class:`SystemExit`, not an error: it must pass through ``except Exception`` in the
    objective (the trial did not fail) and end the worker process quietly.
    """

    def __init__(self, signal_name: str, requeue: bool) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.signal_name = signal_name
        self.requeue = requeue


class PreemptionHandler:
    """Turn SIGUSR2 / SIGTERM into "checkpoint and stop after this epoch".

    SIGUSR2 (Slurm's ``--signal``, submitit's timeout path) asks for a requeue; SIGTERM alone
    (Slurm preemption, ``scancel``) does not, since Slurm requeues preempted jobs itself and a
    cancelled job should end. Installing replaces earlier handlers (including submitit's, whose
    immediate checkpoint would cut the trial mid-epoch); :meth:`uninstall` restores them.

    Example:
        >>> with PreemptionHandler() as preempt:  # doctest: +SKIP
        ...     result = trainable.train(config, preempt.wrap(callback))
        ...     preempt.raise_if_requested()
    """

    def __init__(self, signals: tp.Sequence[int] = (signal.SIGUSR2, signal.SIGTERM)) -> None:
        self.signals = tuple(signals)
        self.received: list[str] = []
        self._previous: dict[int, tp.Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a preemption signal arrived."""
        return bool(self.received)

    @property
    def requeue(self) -> bool:
        """Whether the worker should requeue its job (SIGUSR2 arrived)."""
        return "SIGUSR2" in self.received

    def install(self) -> PreemptionHandler:
        """Install the handlers (main thread only)."""
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """Restore the handlers that were installed before."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def wrap(self, callback: _Callback | None) -> _Callback:
        """Return ``callback`` that also asks for ``{"checkpoint", "stop"}`` once preempted."""

        def wrapped(epoch: int, metrics: dict[str, float]) -> set[str] | None:
            asked = set(callback(epoch, metrics) or ()) if callback is not None else set()
            if self.requested:
                _log.warning("preempted (%s): checkpointing after epoch %d", ",".join(self.received), epoch)
                return asked | {"checkpoint", "stop"}
            return asked or None

        return wrapped

    def raise_if_requested(self) -> None:
        """Raise :class:`TrialPreempted` (a ``SystemExit``) if a preemption signal arrived."""
        if self.requested:
            raise TrialPreempted(",".join(self.received), self.requeue)

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        name = signal.Signals(signum).name
        if name not in self.received:
            self.received.append(name)

    def __enter__(self) -> PreemptionHandler:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


def suspend_trial(study: optuna.Study, trial_id: int, key: str) -> None:
    """Mark a RUNNING trial as suspended: its checkpoint is written, its job will come back.

    It also beats as ``key``, so that the trial names its owner for :func:`claim_own_trials`
    even when it is suspended before the worker's first beat.
    """
    now = time.time()
    study._storage.set_trial_system_attr(trial_id, HEARTBEAT_KEY, {"t": now, "worker": key})
    study._storage.set_trial_system_attr(trial_id, SUSPENDED_KEY, now)


def requeue_job(environ: tp.Mapping[str, str] | None = None) -> bool:
    """Requeue this Slurm job with ``scontrol requeue``; ``False`` outside Slurm or on failure.

    The job must allow requeueing (``sbatch --requeue``; submitit jobs do).
    """
    env = os.environ if environ is None else environ
    job = env.get("SLURM_JOB_ID")
    if not job:
        return False
    proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        _log.warning("scontrol requeue %s failed: %s", job, proc.stderr.strip())
        return False
    _log.info("requeued Slurm job %s", job)
    return True


def claim_own_trials(
    study: optuna.Study, key: str, settings: HeartbeatSettings | None = None
) -> FrozenTrial | None:
    """Find the trial this worker was running before its job was requeued.

    Returns the oldest RUNNING trial owned by ``key`` that was suspended with a checkpoint
    (the caller resumes it with ``optuna.trial.Trial(study, trial._trial_id)`` and the
    trainable's ``resume=True``). Other RUNNING trials owned by ``key`` belong to a dead earlier
    run of this same job: they are failed and re-enqueued now, without waiting for the grace.
    """
    settings = settings or HeartbeatSettings.from_env()
    mine = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if owner_of(t) == key]
    resumable = None
    for trial in sorted(mine, key=lambda t: t.number):
        if resumable is None and trial.system_attrs.get(SUSPENDED_KEY) is not None:
            resumable = trial
            continue
        reason = "its worker restarted without a checkpoint"
        if fail_and_retry(study, trial, key, reason, settings.max_retries):
            _log.warning("trial %d failed and re-enqueued: %s", trial.number, reason)
    if resumable is not None:
        resumes = int(resumable.system_attrs.get(RESUMES_KEY, 0)) + 1
        study._storage.set_trial_system_attr(resumable._trial_id, RESUMES_KEY, resumes)
        _log.info("resuming trial %d (resume %d) for worker %s", resumable.number, resumes, key)
    return resumable


# ----------------------------------------------------------------------------- hpo.run wiring


class PreemptHook(TrialHook):
    """Checkpoint-on-signal for a :class:`hpo.run.Worker`, and resume after a requeue.

    Installed by :func:`_setup_worker` when the worker runs under Slurm (``SLURM_JOB_ID``) or
    ``HPO_PREEMPTION=1``, from the main thread. On a signal: ask the trainable for
    ``{"checkpoint", "stop"}``; once it returned, suspend the trial (under Slurm, or when
    ``HPO_WORKER_KEY`` promises a restart with the same key) or else fail and retry it (nobody
    will resume it), requeue on SIGUSR2 unless
    ``HPO_REQUEUE=0`` (the launcher requeues packed jobs once itself), and exit with
    :data:`PREEMPTED_EXIT_CODE` without telling the study anything.
    """

    def __init__(self, worker: tp.Any, handler: PreemptionHandler, key: str, settings: HeartbeatSettings) -> None:
        self.worker = worker
        self.handler = handler
        self.key = key
        self.settings = settings
        self._claimed = False

    def on_epoch(self, trial: optuna.Trial, epoch: int, metrics: dict[str, float]) -> tp.Iterable[str] | None:
        if self.handler.requested:
            _log.warning("trial %d: %s received; checkpointing after epoch %d", trial.number,
                         ",".join(self.handler.received), epoch)
            return {"checkpoint", "stop"}
        return None

    def on_train_end(self, trial: optuna.Trial, result: dict[str, tp.Any]) -> None:
        if self.handler.requested:
            self._stop(trial)

    def trial_source(self, worker: tp.Any) -> tuple[optuna.Trial, bool] | None:
        """First call: the trial this job was running before its requeue. Stop if signalled
        between trials (a trial that finished after the signal was told to the study first)."""
        if self.handler.requested:
            self._stop(None)
        if self._claimed:
            return None
        self._claimed = True
        own = claim_own_trials(worker.study, self.key, self.settings)
        if own is None:
            return None
        from hpo.run import resume_trial

        return resume_trial(worker.study, own.number), True

    def _stop(self, trial: optuna.Trial | None) -> None:
        study = self.worker.study
        for hook in self.worker.hooks:
            if isinstance(hook, HeartbeatHook):
                hook.stop()
        slurm = bool(os.environ.get("SLURM_JOB_ID"))
        if slurm and not self.handler.requeue:
            # submitit's preemption sends SIGTERM, then SIGUSR2 in a second call: wait for it.
            for _ in range(20):
                if self.handler.requeue:
                    break
                time.sleep(0.1)
        # Someone will run this worker key again: Slurm's requeue, or whoever set HPO_WORKER_KEY.
        resumable = (slurm and (self.handler.requeue or _job_returns())) or bool(os.environ.get("HPO_WORKER_KEY"))
        if trial is not None and resumable:
            suspend_trial(study, trial._trial_id, self.key)
            _log.warning("trial %d suspended with its checkpoint; worker %s resumes it after the requeue",
                         trial.number, self.key)
        elif trial is not None:
            frozen = study._storage.get_trial(trial._trial_id)
            fail_and_retry(study, frozen, self.key, f"stopped by {','.join(self.handler.received)}; nobody will resume it",
                           self.settings.max_retries)
        if self.handler.requeue and slurm and os.environ.get("HPO_REQUEUE", "1") != "0":
            requeue_job()
        raise TrialPreempted(",".join(self.handler.received), self.handler.requeue)


def _job_returns(environ: tp.Mapping[str, str] | None = None) -> bool:
    """After a SIGTERM alone: will Slurm run this job again (preempted or requeued)?

    ``scancel`` and a walltime without requeue also send SIGTERM; then nobody will resume the
    trial, so it is retried at once instead of waiting ``suspend_grace_s``. Slurm counts a
    requeue in the job's ``Restarts`` before it signals the job, so a count above this run's
    ``SLURM_RESTART_COUNT`` means the job comes back. Unknown answers count as returning (the
    reaper is the safety net).
    """
    env = os.environ if environ is None else environ
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", env["SLURM_JOB_ID"]], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, KeyError, subprocess.SubprocessError):
        return True
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    if fields.get("JobState", "").startswith(("PREEMPTED", "REQUEUE", "PENDING")):
        return True
    try:
        return int(fields["Restarts"]) > int(env.get("SLURM_RESTART_COUNT") or 0)
    except (KeyError, ValueError):
        return True


def _setup_worker(worker: tp.Any) -> None:
    import threading

    if not (os.environ.get("SLURM_JOB_ID") or os.environ.get("HPO_PREEMPTION") == "1"):
        return
    if threading.current_thread() is not threading.main_thread():
        _log.warning("worker not in the main thread: no checkpoint-on-preemption")
        return
    handler = PreemptionHandler().install()
    hook = PreemptHook(worker, handler, worker_key(), HeartbeatSettings.from_env())
    worker.hooks.append(hook)
    worker.trial_sources.insert(0, hook.trial_source)
    worker.leave_running_on_exit = True


register_worker_setup(_setup_worker)
