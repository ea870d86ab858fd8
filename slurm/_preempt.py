"""Preemption and walltime: checkpoint the running trial at once, requeue, resume the *same* trial.

Slurm warns a job before it ends it: ``--signal=B:USR2@N`` before the walltime, SIGTERM on
preemption, ``scontrol requeue`` and ``scancel`` (then SIGKILL after ``KillWait``, 30 s by
default), and submitit's ``job._interrupt()`` sends SIGTERM then SIGUSR2. The flow, which
``python -m slurm.worker`` hands to its :class:`hpo.run.Worker` explicitly
(:func:`worker_extensions`):

1. :class:`PreemptionHandler` catches SIGUSR2 / SIGTERM, records the signal and sets the
   worker's ``interrupt`` event (a signal handler must not touch the storage).
2. The trainable sees the event at its next batch, writes a mid-epoch checkpoint (position in
   the epoch, optimizer, RNG, partial sums) and returns ``stopped == "interrupted"``, so the
   time to stop is one batch, whatever the epoch length. Trainables that check only at epoch
   ends get ``{"checkpoint", "stop"}`` from :meth:`PreemptHook.on_epoch` as before.
3. Right after the trainable returns (``TrialHook.on_train_end``) the hook marks the trial
   suspended (it stays RUNNING; the reaper grants it ``suspend_grace_s``), requeues the job on
   SIGUSR2 (``scontrol requeue``; Slurm requeues preempted jobs itself) and ends the worker with
   :class:`TrialPreempted` — nothing is told to the study. With node-local scratch
   (``scratch:`` in the study file, :mod:`hpo._scratch`) the objective has copied the trial's
   whole scratch folder to its shared one before this hook runs, so the requeued job resumes
   it from shared storage on whatever node it lands.
4. On restart the job has the same :func:`slurm_worker_key`; the hook's trial source
   (:func:`claim_own_trials`) finds the suspended trial and the worker runs it again as the same
   Optuna trial (same number, params and Hyperband bracket) with the trainable's
   ``resume=True``, which continues from the checkpoint's batch.

A RUNNING trial owned by this key that was *not* suspended (the previous run of this job was
killed before it could checkpoint) cannot be resumed; it is failed and retried at once.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import threading
import time
import types
import typing as tp

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo._heartbeat import (
    HEARTBEAT_KEY,
    SUSPENDED_KEY,
    HeartbeatHook,
    HeartbeatSettings,
    fail_and_retry,
    owner_of,
)
from hpo.objective import TrialHook

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "RESUMES_KEY",
    "PreemptHook",
    "PreemptionHandler",
    "TrialPreempted",
    "claim_own_trials",
    "reap_orphaned_suspended",
    "requeue_job",
    "slurm_job_spec",
    "slurm_worker_key",
    "suspend_trial",
    "worker_extensions",
]

_log = logging.getLogger(__name__)

#: System attribute: how many times the trial was suspended and resumed.
RESUMES_KEY = "hpo:resumes"
#: Exit status of a worker that stopped for preemption after checkpointing (EX_TEMPFAIL).
PREEMPTED_EXIT_CODE = 75
#: After a SIGTERM alone, how long to wait for the SIGUSR2 that may follow (submitit's
#: ``_interrupt`` sends SIGTERM, then SIGUSR2 from a second ``scancel``): it decides whether the
#: worker requeues its job. The checkpoint itself does not wait for it.
_USR2_AFTER_TERM_S = 2.0


def slurm_worker_key(environ: tp.Mapping[str, str] | None = None) -> str:
    """A key for this worker that survives a Slurm requeue.

    ``HPO_WORKER_KEY`` if set; otherwise ``slurm:<array job>_<task>`` for array tasks,
    ``slurm:<job id>`` for other Slurm jobs and ``local:<host>:<pid>`` outside Slurm. Workers
    sharing one job get a suffix: ``.<SLURM_PROCID>`` when the job has several tasks, and
    ``.<HPO_WORKER_INDEX>`` when several workers are packed into one task.

    Example:
        >>> slurm_worker_key({"SLURM_ARRAY_JOB_ID": "41", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "45"})
        'slurm:41_3'
    """
    import socket

    env = os.environ if environ is None else environ
    if env.get("HPO_WORKER_KEY"):
        return env["HPO_WORKER_KEY"]
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        key = f"slurm:{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    elif env.get("SLURM_JOB_ID"):
        key = f"slurm:{env['SLURM_JOB_ID']}"
    else:
        key = f"local:{socket.gethostname()}:{os.getpid()}"
    if key.startswith("slurm:") and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        key += f".{env.get('SLURM_PROCID', '0')}"
    if env.get("HPO_WORKER_INDEX"):
        key += f".{env['HPO_WORKER_INDEX']}"
    return key


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
    """Turn SIGUSR2 / SIGTERM into "checkpoint now and stop".

    Each signal is recorded and sets every event given to :meth:`add_event` (the worker's
    ``interrupt``, which the trainable polls every batch). SIGUSR2 (Slurm's ``--signal``,
    submitit's timeout path) asks for a requeue; SIGTERM alone (preemption, ``scontrol requeue``,
    ``scancel``) does not, since Slurm requeues such jobs itself and a cancelled job should end.
    Installing replaces earlier handlers (including submitit's); :meth:`uninstall` restores them.

    Example:
        >>> with PreemptionHandler() as preempt:  # doctest: +SKIP
        ...     result = trainable.train(config, preempt.wrap(callback), interrupt=preempt.event)
        ...     preempt.raise_if_requested()
    """

    def __init__(self, signals: tp.Sequence[int] = (signal.SIGUSR2, signal.SIGTERM)) -> None:
        self.signals = tuple(signals)
        self.received: list[str] = []
        #: Set on the first signal; more events can be added with :meth:`add_event`.
        self.event = threading.Event()
        self._events: list[threading.Event] = [self.event]
        self._previous: dict[int, tp.Any] = {}
        self._wake_w: int | None = None

    @property
    def requested(self) -> bool:
        """Whether a preemption signal arrived."""
        return bool(self.received)

    @property
    def requeue(self) -> bool:
        """Whether the worker should requeue its job (SIGUSR2 arrived)."""
        return "SIGUSR2" in self.received

    def add_event(self, event: threading.Event) -> None:
        """Also set ``event`` on a signal (at once if one already arrived)."""
        if event not in self._events:
            self._events.append(event)
        if self.requested:
            event.set()

    def install(self) -> PreemptionHandler:
        """Install the handlers (main thread only).

        The handler itself only records the signal and writes a byte to a pipe; a relay thread
        sets the events. ``Event.set`` takes a lock, and a handler that took it while the main
        thread held it (a second signal arriving inside the first one's ``set``, or one arriving
        inside ``Event.wait``) would deadlock the worker: submitit sends SIGTERM and SIGUSR2
        back to back.
        """
        read_fd, self._wake_w = os.pipe()
        threading.Thread(target=self._relay, args=(read_fd,), name="preempt-relay", daemon=True).start()
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """Restore the handlers that were installed before."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
        if self._wake_w is not None:
            os.close(self._wake_w)  # the relay reads EOF and ends
            self._wake_w = None

    def _relay(self, read_fd: int) -> None:
        try:
            while os.read(read_fd, 64):
                for event in list(self._events):
                    event.set()
        finally:
            os.close(read_fd)

    def wrap(
        self, callback: tp.Callable[[int, dict[str, float]], tp.Iterable[str] | None] | None
    ) -> tp.Callable[[int, dict[str, float]], set[str] | None]:
        """Return ``callback`` that also asks for ``{"checkpoint", "stop"}`` once preempted."""

        def wrapped(epoch: int, metrics: dict[str, float]) -> set[str] | None:
            asked = set(callback(epoch, metrics) or ()) if callback is not None else set()
            if self.requested:
                return asked | {"checkpoint", "stop"}
            return asked or None

        return wrapped

    def raise_if_requested(self) -> None:
        """Raise :class:`TrialPreempted` (a ``SystemExit``) if a preemption signal arrived."""
        if self.requested:
            raise TrialPreempted(",".join(self.received), self.requeue)

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        # No locks here (see install): record, then wake the relay thread.
        name = signal.Signals(signum).name
        if name not in self.received:
            self.received.append(name)
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"!")
            except OSError:
                pass

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


def slurm_job_spec(environ: tp.Mapping[str, str] | None = None) -> str | None:
    """This job as ``scontrol``/``squeue`` must name it: ``<array job>_<task>`` for array tasks.

    Not ``SLURM_JOB_ID``: one task of an array holds the array's own id, and ``scontrol requeue
    <that id>`` requeues every task of the array.

    Example:
        >>> slurm_job_spec({"SLURM_JOB_ID": "57", "SLURM_ARRAY_JOB_ID": "57", "SLURM_ARRAY_TASK_ID": "3"})
        '57_3'
    """
    env = os.environ if environ is None else environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


def requeue_job(environ: tp.Mapping[str, str] | None = None) -> bool:
    """Requeue this Slurm job (this array task only) with ``scontrol requeue``; ``False``
    outside Slurm or on failure.

    The job must allow requeueing (``sbatch --requeue``; submitit jobs do).
    """
    job = slurm_job_spec(environ)
    if not job:
        return False
    proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        _log.warning("scontrol requeue %s failed: %s", job, proc.stderr.strip())
        return False
    _log.info("requeued Slurm job %s", job)
    return True


def claim_own_trials(study: optuna.Study, key: str, settings: HeartbeatSettings | None = None) -> FrozenTrial | None:
    """Find the trial this worker was running before its job was requeued.

    Returns the oldest RUNNING trial owned by ``key`` that was suspended with a checkpoint
    (the caller resumes it with :func:`hpo.run.resume_trial` and the trainable's
    ``resume=True``). Other RUNNING trials owned by ``key`` belong to a dead earlier run of this
    same job: they are failed and re-enqueued now, without waiting for the grace.
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


def _job_gone(spec: str) -> bool | None:
    """Whether Slurm job ``spec`` has left the queue for good (``None``: cannot tell)."""
    try:
        proc = subprocess.run(["squeue", "-h", "-j", spec, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode == 0:
        return not proc.stdout.strip()
    return True if "invalid job id" in proc.stderr.lower() else None


def reap_orphaned_suspended(study: optuna.Study, reaper: str, settings: HeartbeatSettings | None = None) -> list[int]:
    """Fail and retry suspended trials whose Slurm job will never come back.

    A trial suspended for a requeue waits ``suspend_grace_s`` for its job; when that job was
    cancelled or failed meanwhile (``scancel`` of the requeued task, a signal while it was
    starting), nobody resumes it. Its owner key names the job (``slurm:<array job>_<task>``), so
    any Slurm worker can see that the job left the queue and retry the trial at once.

    Returns:
        The numbers of the trials failed (and re-enqueued) by this call.
    """
    settings = settings or HeartbeatSettings.from_env()
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = owner_of(trial) or ""
        if trial.system_attrs.get(SUSPENDED_KEY) is None or not owner.startswith("slurm:"):
            continue
        spec = owner[len("slurm:") :].split(".")[0]
        if _job_gone(spec) and fail_and_retry(
            study, trial, reaper, f"suspended, but its Slurm job {spec} is gone", settings.max_retries
        ):
            _log.warning("trial %d failed and re-enqueued: suspended, but its Slurm job %s is gone", trial.number, spec)
            reaped.append(trial.number)
    return reaped


class PreemptHook(TrialHook):
    """Checkpoint-on-signal for a :class:`hpo.run.Worker`, and resume after a requeue.

    Pass it to the worker explicitly (:func:`worker_extensions` does): as a hook, and its
    :meth:`trial_source` first among the trial sources. On a signal the trainable stops at its
    next batch (the worker's ``interrupt``) or epoch (``{"checkpoint", "stop"}``); once it
    returned, the trial is suspended when the worker will come back with the same key (a
    requeued Slurm job, or a caller-given ``HPO_WORKER_KEY``) and otherwise failed and retried
    at once (nobody will resume it); on SIGUSR2 the job is requeued unless ``HPO_REQUEUE=0``
    (a packed job requeues once itself); the worker exits with :data:`PREEMPTED_EXIT_CODE`
    without telling the study anything.

    Args:
        handler: the installed signal handler.
        key: this worker's :func:`slurm_worker_key`.
        settings: heartbeat timing (``max_retries``).
        stable_key: the caller promised to restart this worker with the same key
            (``HPO_WORKER_KEY``), so a stopped trial is resumable outside Slurm too.
    """

    def __init__(self, handler: PreemptionHandler, key: str, settings: HeartbeatSettings, stable_key: bool = False) -> None:
        self.handler = handler
        self.key = key
        self.settings = settings
        self.stable_key = stable_key
        self._worker: tp.Any = None
        self._claimed = False
        self._last_orphan_check = -math.inf

    def on_epoch(self, trial: optuna.Trial, epoch: int, metrics: dict[str, float]) -> tp.Iterable[str] | None:
        if self.handler.requested:
            _log.warning(
                "trial %d: %s received; checkpointing after epoch %d", trial.number, ",".join(self.handler.received), epoch
            )
            return {"checkpoint", "stop"}
        return None

    def on_train_end(self, trial: optuna.Trial, result: tp.Any) -> None:
        if self.handler.requested:
            self._stop(trial)

    def trial_source(self, worker: tp.Any) -> tuple[optuna.Trial, bool] | None:
        """First call: the trial this job was running before its requeue. Stop if signalled
        between trials (a trial that finished after the signal was told to the study first)."""
        if self._worker is None:
            self._worker = worker
            interrupt = getattr(worker, "interrupt", None)
            if isinstance(interrupt, threading.Event):
                self.handler.add_event(interrupt)
        if self.handler.requested:
            self._stop(None)
        if time.monotonic() - self._last_orphan_check >= self.settings.grace_s:
            self._last_orphan_check = time.monotonic()
            try:
                reap_orphaned_suspended(worker.study, self.key, self.settings)
            except Exception as e:  # best effort: the heartbeat reaper is the safety net
                _log.warning("checking suspended trials failed: %s: %s", type(e).__name__, e)
        if self._claimed:
            return None
        self._claimed = True
        own = claim_own_trials(worker.study, self.key, self.settings)
        if own is None:
            return None
        from hpo.run import resume_trial

        return resume_trial(worker.study, own.number), True

    def _stop(self, trial: optuna.Trial | None) -> None:
        for hook in getattr(self._worker, "hooks", ()):
            if isinstance(hook, HeartbeatHook):
                hook.stop()
        slurm = bool(os.environ.get("SLURM_JOB_ID"))
        resumable = self.stable_key or (slurm and (self.handler.requeue or _job_returns()))
        if slurm and not resumable:
            # A SIGTERM alone and the job does not come back: maybe submitit's _interrupt, whose
            # SIGUSR2 (requeue) follows from a second scancel. Wait briefly for it.
            t_end = time.monotonic() + _USR2_AFTER_TERM_S
            while not self.handler.requeue and time.monotonic() < t_end:
                time.sleep(0.1)
            resumable = self.handler.requeue
        if trial is not None:
            study = trial.study
            if resumable:
                suspend_trial(study, trial._trial_id, self.key)
                _log.warning(
                    "trial %d suspended with its checkpoint; worker %s resumes it after the requeue", trial.number, self.key
                )
            else:
                frozen = study._storage.get_trial(trial._trial_id)
                fail_and_retry(
                    study,
                    frozen,
                    self.key,
                    f"stopped by {','.join(self.handler.received)}; nobody will resume it",
                    self.settings.max_retries,
                )
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
    job = slurm_job_spec(env)
    if not job:
        return True
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return True
    out = out.splitlines()[0] if out.strip() else ""
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    if fields.get("JobState", "").startswith(("PREEMPTED", "REQUEUE", "PENDING")):
        return True
    try:
        return int(fields["Restarts"]) > int(env.get("SLURM_RESTART_COUNT") or 0)
    except (KeyError, ValueError):
        return True


def worker_extensions(environ: tp.Mapping[str, str] | None = None) -> dict[str, tp.Any]:
    """What ``python -m slurm.worker`` adds to an :class:`hpo.run.Worker`, as keyword arguments.

    Installs the signal handler (so it must run in the main thread), exports this worker's
    :func:`slurm_worker_key` as ``HPO_WORKER_KEY`` (so the heartbeat and reaper of :mod:`hpo`
    name the same owner) and returns ``{"hooks", "trial_sources", "leave_running_on_exit"}`` for
    :func:`hpo.run.run_study`.

    Raises:
        RuntimeError: outside the main thread (a signal handler cannot be installed there);
            the caller must treat this as fatal: a worker without it loses trials on preemption.
    """
    env = os.environ if environ is None else environ
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("slurm.worker: the preemption handler needs the main thread; run the worker there")
    key = slurm_worker_key(env)
    hook = PreemptHook(PreemptionHandler(), key, HeartbeatSettings.from_env(env), stable_key=bool(env.get("HPO_WORKER_KEY")))
    hook.handler.install()
    os.environ["HPO_WORKER_KEY"] = key
    return {"hooks": [hook], "trial_sources": [hook.trial_source], "leave_running_on_exit": True}
