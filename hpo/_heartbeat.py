"""Dead-worker detection for every storage: heartbeats per running trial and a reaper.

Optuna's own heartbeat (``RDBStorage(heartbeat_interval=…)``, ``fail_stale_trials``) exists only
for relational storages (Optuna 4–5 give ``JournalStorage`` none). Studies on shared filesystems use the journal storage, and their workers die too
(SIGKILL, OOM, node failure, a job cancelled at its walltime). This module gives every storage
the same protection, through the storage API alone:

* :class:`Heartbeat` — a daemon thread that stamps the running trial's system attribute
  ``hpo:heartbeat`` (Unix time and owner :func:`worker_key`) every ``interval_s``.
* :func:`reap_stale_trials` — run by every worker when it starts, at most once per ``grace_s``
  and before it exits (:class:`HeartbeatHook`), and by ``hpo.collate`` / ``hpo.report`` (so a study whose workers are all dead is
  cleaned up too): RUNNING trials whose heartbeat is older than ``grace_s`` become FAIL and
  Optuna's own ``RetryHeartbeatStaleTrialCallback`` adds a WAITING retry with the same parameters.
  Exactly one reaper wins each trial (a conditional
  ``UPDATE`` on relational storages, the journal's log order on journal storages), so each dead
  trial is retried once. Trials suspended for a Slurm requeue (see :mod:`slurm._preempt`) get
  ``suspend_grace_s`` instead.

Every storage operation costs (on a journal file each write takes the file's lock), so a
:class:`hpo.run.Worker` writes no beat when a trial starts: in a study marked with the study
system attribute ``hpo:heartbeats`` (set once by the first worker), a trial's own
``datetime_start`` is its first beat. The worker's first explicit beat, which also names the
owner, comes :data:`FIRST_BEAT_FRACTION` of an interval after the start, so trials shorter than
that cost no heartbeat write at all.

Counts add up: a reaped trial stays FAIL with ``hpo:reaped`` saying who reaped it and why, and
its retry is a new trial carrying Optuna's system attributes ``failed_trial`` (first trial of the
chain, whose seed the retry trains with: :func:`original_trial`) and ``retry_history``, and the
user attributes ``retry_of`` (the trial it retries) and ``retries``.

Environment variables set the defaults (handy for ``sbatch`` scripts): ``HPO_HEARTBEAT_S``
(interval, 30), ``HPO_GRACE_S`` (4 intervals), ``HPO_SUSPEND_GRACE_S`` (1 h),
``HPO_MAX_RETRIES`` (3) and ``HPO_WORKER_KEY`` (see :func:`worker_key`).
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
import os
import socket
import threading
import time
import typing as tp
import warnings
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from runtools.provenance import mask_secrets

__all__ = [
    "FAILED_TRIAL_KEY",
    "HEARTBEAT_KEY",
    "REAPED_KEY",
    "RETRY_HISTORY_KEY",
    "STUDY_BEATS_KEY",
    "SUSPENDED_KEY",
    "Heartbeat",
    "HeartbeatHook",
    "HeartbeatSettings",
    "enqueue_retry",
    "fail_and_retry",
    "fail_trial_once",
    "make_heartbeat",
    "mark_study",
    "original_trial",
    "owner_of",
    "reap_dead_trials",
    "reap_stale_trials",
    "warn_if_network_filesystem",
    "worker_key",
]

_log = logging.getLogger(__name__)

#: System attribute of a running trial: ``{"t": Unix time of the last beat, "worker": owner key}``
#: (one attribute, so a beat is one storage write).
HEARTBEAT_KEY = "hpo:heartbeat"
#: Study system attribute: its workers beat, so a RUNNING trial without a beat is beating at its
#: ``datetime_start`` (trials of unmarked studies without a beat are plain Optuna's: left alone).
STUDY_BEATS_KEY = "hpo:heartbeats"
#: A worker's first beat for a trial comes this fraction of ``interval_s`` after the trial started.
FIRST_BEAT_FRACTION = 0.25
#: System attribute: Unix time at which the owner suspended the trial for a requeue, or ``None``.
SUSPENDED_KEY = "hpo:suspended"
#: System attribute on a reaped trial: ``{"by", "at", "reason"}``.
REAPED_KEY = "hpo:reaped"
#: User attributes of a retry: the failed trial's number and how many retries came before.
RETRY_OF_ATTR = "retry_of"
RETRIES_ATTR = "retries"
#: System attributes of a retry, as Optuna's ``RetryHeartbeatStaleTrialCallback`` (formerly
#: ``RetryFailedTrialCallback``) writes them: the first trial of the chain, and every trial before.
FAILED_TRIAL_KEY = "failed_trial"
RETRY_HISTORY_KEY = "retry_history"


class HeartbeatSettings(tp.NamedTuple):
    """Timing of heartbeats and reaping, in seconds.

    Args:
        interval_s: how often a running trial's heartbeat is written.
        grace_s: a RUNNING trial whose heartbeat is older than this is dead.
        suspend_grace_s: the same for a trial suspended while its Slurm job is requeued.
        max_retries: how many times a dead trial's parameters are retried (0: never).
    """

    interval_s: float = 30.0
    grace_s: float = 120.0
    suspend_grace_s: float = 3600.0
    max_retries: int = 3

    @classmethod
    def from_env(cls, environ: tp.Mapping[str, str] | None = None, **overrides: tp.Any) -> HeartbeatSettings:
        """Defaults from ``HPO_HEARTBEAT_S``, ``HPO_GRACE_S``, ``HPO_SUSPEND_GRACE_S``, ``HPO_MAX_RETRIES``.

        Keyword arguments that are not ``None`` win over the environment.
        """
        env = os.environ if environ is None else environ
        interval = float(env.get("HPO_HEARTBEAT_S", cls._field_defaults["interval_s"]))
        values: dict[str, tp.Any] = {
            "interval_s": interval,
            "grace_s": float(env.get("HPO_GRACE_S", 4 * interval)),
            "suspend_grace_s": float(env.get("HPO_SUSPEND_GRACE_S", cls._field_defaults["suspend_grace_s"])),
            "max_retries": int(env.get("HPO_MAX_RETRIES", cls._field_defaults["max_retries"])),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.interval_s <= 0 or settings.grace_s <= settings.interval_s:
            raise ValueError(
                f"heartbeat: grace_s must be larger than interval_s > 0, but got "
                f"interval_s={settings.interval_s}, grace_s={settings.grace_s} "
                "(set HPO_HEARTBEAT_S / HPO_GRACE_S)"
            )
        return settings


def worker_key(environ: tp.Mapping[str, str] | None = None) -> str:
    """This worker's key: ``HPO_WORKER_KEY`` if set, else ``local:<host>:<pid>``.

    A launcher that restarts workers sets ``HPO_WORKER_KEY`` to a key that survives the restart
    (``python -m slurm.worker`` sets ``slurm:<array job>_<task>``, see
    :func:`slurm._preempt.slurm_worker_key`), so a requeued worker finds its own trials.

    Example:
        >>> worker_key({"HPO_WORKER_KEY": "slurm:41_3"})
        'slurm:41_3'
    """
    env = os.environ if environ is None else environ
    return env.get("HPO_WORKER_KEY") or f"local:{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Stamp a running trial's heartbeat from a daemon thread until stopped.

    The first beat is written synchronously by :meth:`start`, so a trial is never RUNNING for
    long without one. Use it as a context manager around the trial's training.

    Args:
        storage: the study's storage (any :class:`optuna.storages.BaseStorage`).
        trial_id: the running trial's storage id (``trial._trial_id``).
        key: the owner's :func:`worker_key`.
        interval_s: seconds between beats.

    Example:
        >>> with Heartbeat(study._storage, trial._trial_id, worker_key()):  # doctest: +SKIP
        ...     value = objective(trial)
    """

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, key: str, interval_s: float) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.key = key
        self.interval_s = float(interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """Write one heartbeat; ``False`` once the trial is finished (e.g. reaped)."""
        try:
            self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_KEY, {"t": time.time(), "worker": self.key})
        except UpdateFinishedTrialError:
            return False
        except Exception as e:  # a flaky storage must not kill the trial; the next beat retries
            _log.warning("heartbeat of trial id %d failed: %s", self.trial_id, mask_secrets(str(e)))
        return True

    def start(self, resumed: bool = False) -> Heartbeat:
        """Write the first beat (and clear the suspension of a resumed trial); start the thread."""
        if resumed:
            self.storage.set_trial_system_attr(self.trial_id, SUSPENDED_KEY, None)
        self.beat()
        self._thread = threading.Thread(target=self._run, name=f"hpo-heartbeat-{self.trial_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (the trial's state is left alone)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.beat():
                _log.warning("trial id %d finished elsewhere (reaped?); heartbeat stops", self.trial_id)
                return

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fail_trial_once(storage: optuna.storages.BaseStorage, trial_id: int) -> bool:
    """Move a RUNNING trial to FAIL; ``True`` for exactly one caller when several race.

    Optuna's ``set_trial_state_values`` locks the row on PostgreSQL/MySQL and replays the journal
    in log order, but on SQLite two processes can both read RUNNING and both "succeed". A
    conditional ``UPDATE … WHERE state = 'RUNNING'`` has one winner on every SQL backend.
    """
    rdb = _rdb_backend(storage)
    if rdb is not None:
        import sqlalchemy
        from optuna.storages._rdb import models

        table = models.TrialModel.__table__
        stmt = (
            sqlalchemy.update(table)
            .where(table.c.trial_id == trial_id, table.c.state == TrialState.RUNNING)
            .values(state=TrialState.FAIL, datetime_complete=_dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None))
        )
        from hpo._retry import call_with_retry

        tried = False

        def attempt() -> bool:
            nonlocal tried
            if tried and rdb.get_trial(trial_id).state != TrialState.RUNNING:
                # The connection died around the commit: the UPDATE may have won, or another reaper.
                # Counting it as lost keeps retries unique; the trial then waits for no retry.
                _log.warning(
                    "trial id %d: failing it met a lost connection and it is no longer RUNNING; "
                    "not enqueueing a retry from this reaper",
                    trial_id,
                )
                return False
            tried = True
            with rdb.engine.begin() as conn:
                return conn.execute(stmt).rowcount == 1

        return call_with_retry(attempt, f"reaper: failing trial id {trial_id}")
    try:
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False
    return True


def reap_stale_trials(
    study: optuna.Study,
    settings: HeartbeatSettings | None = None,
    *,
    reaper: str | None = None,
    now: float | None = None,
) -> list[int]:
    """Fail the study's dead RUNNING trials and re-enqueue their parameters.

    A trial is dead when its heartbeat is older than ``settings.grace_s`` (``suspend_grace_s``
    while it is suspended for a requeue). A trial without a heartbeat is beating at its
    ``datetime_start`` in a study marked by :func:`mark_study`, and is left alone otherwise (run
    by plain Optuna). Each dead trial is retried at most ``settings.max_retries`` times in a chain.

    Args:
        study: the study to clean.
        settings: timings; :meth:`HeartbeatSettings.from_env` when ``None``.
        reaper: who reaps, recorded on the failed trial (defaults to :func:`worker_key`).
        now: the current Unix time (for tests).

    Returns:
        The numbers of the trials this call failed (each at most once across all reapers).
    """
    settings = settings or HeartbeatSettings.from_env()
    reaper = reaper or worker_key()
    now = time.time() if now is None else now
    reaped: list[int] = []
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return reaped
    started_beats = STUDY_BEATS_KEY in study._storage.get_study_system_attrs(study._study_id)
    for trial in running:
        age = _stale_age(trial, settings, now, started_beats)
        if age is None:
            continue
        suspended = trial.system_attrs.get(SUSPENDED_KEY) is not None
        reason = f"{'suspended' if suspended else 'heartbeat'} stale for {age:.0f} s"
        if fail_and_retry(study, trial, reaper, reason, settings.max_retries):
            _log.warning("trial %d of worker %s failed by %s: %s", trial.number, owner_of(trial), reaper, reason)
            reaped.append(trial.number)
    return reaped


def fail_and_retry(study: optuna.Study, trial: FrozenTrial, reaper: str, reason: str, max_retries: int) -> bool:
    """Fail a dead RUNNING ``trial`` and enqueue its parameters again; ``True`` for the one winner.

    Why it died is recorded first (``hpo:reaped`` and the user attribute ``error``: a finished
    trial can no longer be annotated), then :func:`fail_trial_once` picks the single winner,
    which enqueues the retry unless this chain of retries already had ``max_retries``.
    """
    storage = study._storage
    try:
        storage.set_trial_system_attr(trial._trial_id, REAPED_KEY, {"by": reaper, "at": time.time(), "reason": reason})
        storage.set_trial_user_attr(trial._trial_id, "error", f"worker died: {reason}")
    except UpdateFinishedTrialError:
        return False  # it finished meanwhile (its worker was alive after all, or another reaper won)
    if not fail_trial_once(storage, trial._trial_id):
        return False
    enqueue_retry(study, trial, max_retries)
    return True


def enqueue_retry(study: optuna.Study, trial: FrozenTrial, max_retries: int) -> bool:
    """Enqueue a WAITING copy of ``trial``'s parameters through Optuna's retry callback, unless its
    chain of retries already had ``max_retries``; ``True`` when a retry was enqueued.

    Used for dead trials (:func:`fail_and_retry`) and, by ``max_retries`` of a study file, for trials
    whose training raised (:mod:`hpo._feature_hook`).
    """
    history = [*trial.system_attrs.get(RETRY_HISTORY_KEY, []), trial.number]
    if len(history) > max_retries:
        _log.warning("trial %d not retried: it was retry %d of %d", trial.number, len(history) - 1, max_retries)
        return False
    # Optuna's own retry callback adds the WAITING copy (params, distributions) and records the
    # chain under its attribute names; hand it only the chain, not this trial's heartbeat attrs.
    src = copy.copy(trial)
    src.system_attrs = {
        k: copy.deepcopy(trial.system_attrs[k]) for k in (FAILED_TRIAL_KEY, RETRY_HISTORY_KEY) if k in trial.system_attrs
    }
    src.user_attrs = {RETRY_OF_ATTR: trial.number, RETRIES_ATTR: len(history)}
    src.intermediate_values = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        _retry_callback(max_retries)(study, src)
    return True


def _retry_callback(max_retries: int) -> tp.Callable[[optuna.Study, FrozenTrial], None]:
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    return cls(max_retry=max_retries)


def original_trial(trial: FrozenTrial) -> int:
    """The number of the first trial of ``trial``'s retry chain (its own number if not a retry).

    A retry trains with the seed of that trial, so a retried trial is the same experiment.
    """
    first = trial.system_attrs.get(FAILED_TRIAL_KEY)
    return int(first) if first is not None else trial.number


def mark_study(study: optuna.Study) -> None:
    """Mark ``study`` as one whose workers beat (one write, by the first worker only)."""
    if STUDY_BEATS_KEY not in study._storage.get_study_system_attrs(study._study_id):
        study._storage.set_study_system_attr(study._study_id, STUDY_BEATS_KEY, True)


def owner_of(trial: FrozenTrial) -> str | None:
    """The :func:`worker_key` of the worker that last beat for ``trial``, or that recorded its result."""
    beat = trial.system_attrs.get(HEARTBEAT_KEY)
    if isinstance(beat, dict):
        return beat.get("worker")
    result = trial.user_attrs.get("result")
    return result.get("worker") if isinstance(result, dict) else None


def warn_if_network_filesystem(path: str | os.PathLike[str]) -> bool:
    """Warn when an SQLite file sits on a network filesystem (NFS, Lustre, GPFS, CIFS…).

    SQLite's locking is unreliable there; use ``journal:PATH`` or PostgreSQL instead.
    Returns ``True`` when it warned.
    """
    fs = _filesystem_type(Path(path))
    if fs is None or not any(fs.startswith(n) for n in _NETWORK_FS):
        return False
    warnings.warn(
        f"{path}: the SQLite storage is on a {fs} filesystem, where SQLite locks are unreliable; "
        "use 'journal:PATH' or a PostgreSQL URL for studies shared between machines",
        RuntimeWarning,
        stacklevel=2,
    )
    return True


_NETWORK_FS = ("nfs", "lustre", "gpfs", "cifs", "smb", "beegfs", "ceph", "fuse.sshfs", "9p", "panfs", "afs")


def _filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` from ``/proc/mounts`` (Linux only)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = path.resolve()
    best, fs = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (target == Path(mount) or Path(mount) in target.parents) and len(mount) > len(best):
            best, fs = mount, parts[2]
    return fs


def _stale_age(trial: FrozenTrial, settings: HeartbeatSettings, now: float, started_beats: bool) -> float | None:
    """Seconds since the last heartbeat if the trial is dead, else ``None``.

    ``started_beats``: a trial without a beat beats at its ``datetime_start`` (a marked study).
    """
    age, limit = _beat_age(trial, settings, now, started_beats)
    return age if age is not None and age > limit else None


def _beat_age(trial: FrozenTrial, settings: HeartbeatSettings, now: float, started_beats: bool) -> tuple[float | None, float]:
    """``(seconds since the trial's last beat or None when it has none, its grace)``."""
    beat = trial.system_attrs.get(HEARTBEAT_KEY)
    if isinstance(beat, dict):
        last = float(beat["t"])
    elif started_beats and trial.datetime_start is not None:
        last = trial.datetime_start.timestamp()  # Optuna stores it naive, in local time
    else:
        return None, settings.grace_s
    suspended = trial.system_attrs.get(SUSPENDED_KEY)
    age = now - max(last, float(suspended or 0.0))
    limit = settings.suspend_grace_s if suspended is not None else settings.grace_s
    return age, limit


def _rdb_backend(storage: optuna.storages.BaseStorage) -> optuna.storages.RDBStorage | None:
    backend = getattr(storage, "_backend", storage)  # _CachedStorage wraps the RDBStorage
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


# ----------------------------------------------------------------------------- hpo.run wiring
from hpo.objective import TrialHook  # noqa: E402


class HeartbeatHook(TrialHook):
    """Beats for every trial a :class:`hpo.run.Worker` runs; reaps dead trials between trials.

    Built by every :class:`hpo.run.Worker` (:func:`make_heartbeat`). One daemon thread per worker beats for
    whichever trial is running. Starting a trial writes nothing: its ``datetime_start`` is its
    first beat (the study is marked by :func:`mark_study`); the first explicit beat, naming the
    owner, comes ``FIRST_BEAT_FRACTION * interval_s`` later and then one every ``interval_s``.
    A resumed trial beats at once (its ``datetime_start`` is old). The reaper runs when the
    worker starts, then at most once per ``grace_s`` (a trial cannot go stale faster) as a trial
    source that yields nothing of its own, and once more before the worker exits
    (:meth:`reap`, :meth:`late_s`), so that a trial killed near the end of a study is still retried.
    """

    def __init__(self, study: optuna.Study, key: str, settings: HeartbeatSettings, max_trials: int | None = None) -> None:
        self.study = study
        self.key = key
        self.settings = settings
        self.max_trials = max_trials  # unused; kept for callers that pass it
        self._beat: Heartbeat | None = None
        self._due = float("inf")  # time.monotonic() of the next beat
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._last_reap = -float("inf")

    def on_trial_start(self, trial: optuna.Trial, run_dir: Path, resume: bool) -> None:
        beat = Heartbeat(self.study._storage, trial._trial_id, self.key, self.settings.interval_s)
        first_s = FIRST_BEAT_FRACTION * self.settings.interval_s
        if resume:  # its datetime_start is old: clear the suspension and beat now
            self.study._storage.set_trial_system_attr(trial._trial_id, SUSPENDED_KEY, None)
            beat.beat()
            first_s = self.settings.interval_s
        with self._wake:
            self._beat = beat
            self._due = time.monotonic() + first_s
            self._wake.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hpo-heartbeat", daemon=True)
            self._thread.start()

    def on_train_end(self, trial: optuna.Trial, result: tp.Any) -> None:
        self.stop()  # before the result is told, so no beat races the trial's end

    def on_trial_end(self, trial: optuna.Trial, outcome: tp.Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop beating for the current trial (also used before a preempted worker exits)."""
        with self._wake:
            self._beat = None

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._beat is None or time.monotonic() < self._due:
                    self._wake.wait(None if self._beat is None else self._due - time.monotonic())
                beat = self._beat
                self._due = time.monotonic() + self.settings.interval_s
            if not beat.beat():
                with self._wake:
                    if self._beat is beat:  # not merely a trial that ended while we beat
                        _log.warning("trial id %d finished elsewhere (reaped?); heartbeat stops", beat.trial_id)
                        self._beat = None

    def trial_source(self, worker: tp.Any) -> tuple[optuna.Trial, bool] | None:
        """Reap dead trials (at most once per ``grace_s``); never yields a trial itself (their
        retries wait in the study and ``study.ask()`` takes them first)."""
        if time.monotonic() - self._last_reap >= self.settings.grace_s:
            self.reap()
        return None

    def reap(self) -> list[int]:
        """Fail and retry the study's dead trials now (best effort: errors are logged)."""
        self._last_reap = time.monotonic()
        try:
            return reap_stale_trials(self.study, self.settings, reaper=self.key)
        except Exception as e:  # reaping is best effort; the next worker retries
            _log.warning("reaping stale trials failed: %s: %s", type(e).__name__, mask_secrets(str(e)))
            return []

    def late_s(self, now: float | None = None) -> float:
        """Seconds until the last RUNNING trial that missed two beats goes stale (0: none).

        A worker about to exit waits that long and reaps again, so that a trial whose worker
        died shortly before is retried even when no other worker is left.
        """
        now = time.time() if now is None else now
        marked = STUDY_BEATS_KEY in self.study._storage.get_study_system_attrs(self.study._study_id)
        wait = 0.0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            age, limit = _beat_age(t, self.settings, now, marked)
            if age is not None and t.system_attrs.get(SUSPENDED_KEY) is None and 2 * self.settings.interval_s < age <= limit:
                wait = max(wait, limit - age + 0.5)
        return wait


def make_heartbeat(
    study: optuna.Study, key: str, settings: HeartbeatSettings | None = None, storage_url: str | None = None
) -> HeartbeatHook:
    """The heartbeat of a worker of ``study`` (``key``: :func:`worker_key`); marks the study and
    warns about an SQLite file on a network filesystem."""
    rdb = _rdb_backend(study._storage)
    if rdb is not None and rdb.engine.url.get_backend_name() == "sqlite" and rdb.engine.url.database:
        warn_if_network_filesystem(rdb.engine.url.database)
    mark_study(study)
    return HeartbeatHook(study, key, settings or HeartbeatSettings.from_env())


def reap_dead_trials(study: optuna.Study) -> list[int]:
    """Reap for a command that runs no trial (``hpo.collate``, ``hpo.report``): a study whose
    workers are all dead gets its trials failed and retried too."""
    reaped = reap_stale_trials(study, reaper=f"maintenance:{socket.gethostname()}:{os.getpid()}")
    if reaped:
        _log.warning("study %s: failed and re-enqueued dead trials %s", study.study_name, reaped)
    return reaped
