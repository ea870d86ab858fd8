"""``python -m hpo.run``: create or resume a study and run trials in this process.

Many processes on many machines may run the same command against the same storage.
``--n-trials`` counts this process's trials; the study file's ``max_trials`` caps the whole
study (trials in every state, from every worker). Each trial trains in
``<output_dir>/<study>/trials/<number>/``; a trial that raises is recorded as failed and the
worker goes on. At the end the worker collates the study's artifacts.

Example::

    python -m hpo.run --study studies/quickstart.yaml --n-trials 8

Seams for launchers (see :class:`Worker`), passed explicitly by the caller (``slurm`` passes
its own through ``hpo.run.main(hooks_factory=...)``): ``trial_sources`` decide where the next trial comes from before
``study.ask()`` (e.g. a requeued job resuming its own trial with :func:`resume_trial`),
``hooks`` see every epoch, ``leave_running_on_exit`` keeps an interrupted trial RUNNING so that
it can be resumed rather than failed, and ``Worker.interrupt`` (a :class:`threading.Event`)
asks the running trainable to checkpoint at its next batch and return. The worker itself
always beats for its trial and reaps dead ones (:mod:`hpo._heartbeat`).

Exit status: 0 when trials ran (or none were left), 1 when every trial this worker ran failed
or it was interrupted, 2 for an invalid study file, storage or search space.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import math
import os
import sys
import threading
import time
import typing as tp

import optuna
from optuna.trial import TrialState

from hpo._feature_hook import feature_hooks
from hpo._heartbeat import FAILED_TRIAL_KEY, HeartbeatHook, make_heartbeat, worker_key
from hpo.errors import HpoError
from hpo.objective import Objective, TrialHook, TrialInterrupted, TrialOutcome
from hpo.study import (
    StudyConfig,
    add_override_arguments,
    bind_study_dir,
    check_search_space,
    coalesced_writes,
    create_or_load_study,
    load_study_config,
    make_storage,
    mask_url,
    override_list,
    storage_url,
    study_lock,
)

__all__ = ["RunSummary", "TrialSource", "Worker", "main", "resume_trial", "run_study", "worker_seed"]

_LOG = logging.getLogger(__name__)

#: ``source(worker) -> (trial, resume) | None``; consulted before ``study.ask()``.
TrialSource = tp.Callable[["Worker"], "tuple[optuna.Trial, bool] | None"]


@dataclasses.dataclass
class RunSummary:
    """What one worker did."""

    study: str
    n_complete: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    numbers: list[int] = dataclasses.field(default_factory=list)
    best_value: float | list[float] | None = None
    stopped: str = "n_trials"  # n_trials | timeout | max_trials | interrupted
    n_retries: int = 0  # retries of dead trials run before exiting (also counted above)

    @property
    def n_trials(self) -> int:
        return self.n_complete + self.n_pruned + self.n_failed


def worker_seed(base_seed: int, worker: str) -> int:
    """A sampler seed that differs per worker (so concurrent workers do not propose the same
    points) and is reproducible for a given worker id."""
    digest = hashlib.sha256(f"{base_seed}:{worker}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def resume_trial(study: optuna.Study, number: int) -> optuna.Trial:
    """Return a handle on the RUNNING trial ``number`` so that this process can finish it.

    The trial keeps its number, parameters, intermediate values and so its Hyperband
    bracket; train it with ``Objective.run(trial, resume=True)``.

    Raises:
        HpoError: when there is no such trial or it is no longer RUNNING.
    """
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number == number:
            return optuna.Trial(study, t._trial_id)
    raise HpoError(f"study {study.study_name!r}: no RUNNING trial number {number} to resume")


class Worker:
    """Runs trials of one study in this process.

    Args:
        cfg: the validated study.
        storage: overrides ``cfg.storage`` (a URL or an Optuna storage).
        hooks: :class:`~hpo.objective.TrialHook` objects called around every trial.
        trial_sources: tried in order before ``study.ask()`` by :meth:`start_trial`.
        worker: this worker's id (default :func:`hpo._heartbeat.worker_key`, stable across requeues).
        progress: show a tqdm bar (trials done / best).
        leave_running_on_exit: when the process is interrupted mid-trial, leave the trial
            RUNNING (to be resumed from its checkpoint) instead of marking it failed.

    Raises:
        StudyConfigError: when the stored study has another search space, or the study folder
            belongs to another study.
    """

    def __init__(
        self,
        cfg: StudyConfig,
        *,
        storage: str | optuna.storages.BaseStorage | None = None,
        hooks: tp.Sequence[TrialHook] = (),
        trial_sources: tp.Sequence[TrialSource] = (),
        worker: str | None = None,
        progress: bool = True,
        leave_running_on_exit: bool = False,
    ) -> None:
        self.cfg = cfg
        self.worker = worker or worker_key()
        self.sampler_seed = worker_seed(cfg.seed, self.worker)
        self.url = storage if storage is not None else cfg.storage
        self.storage = make_storage(self.url)
        self.study = create_or_load_study(cfg, self.storage, cfg.sampler_for(self.sampler_seed), url=self.url)
        check_search_space(cfg, self.study)
        bind_study_dir(cfg, self.study, self.url)
        #: Set it (from a signal handler, another thread) to make the running trainable checkpoint
        #: at its next batch and return; the worker then starts no new trial.
        self.interrupt = threading.Event()
        self.heartbeat: HeartbeatHook = make_heartbeat(self.study, self.worker)
        features = feature_hooks(cfg, self.worker)  # per-trial log line, constraints, max_retries, artifacts, tracking
        self.objective = Objective(
            cfg, hooks=[self.heartbeat, *features, *hooks], worker=self.worker, interrupt=self.interrupt, defer_user_attrs=True
        )
        self.hooks = self.objective.hooks
        self.trial_sources = list(trial_sources)
        self.progress = progress
        self.leave_running_on_exit = leave_running_on_exit
        self.current: optuna.Trial | None = None
        self.trial_sources.append(self.heartbeat.trial_source)

    # -- the single place where a trial starts -------------------------------------------------
    def start_trial(self) -> tuple[optuna.Trial, bool] | None:
        """Return the next ``(trial, resume)``, or ``None`` when the study-wide cap is reached.

        Trial sources come first (a requeued job's own trial, the reaper); otherwise
        ``study.ask()`` gives the next trial (waiting retries and enqueued parameters first).
        With ``max_trials`` the count and the ``ask()`` run under :func:`~hpo.study.study_lock`,
        so concurrent workers never create more trials than the cap; a retry of a dead trial
        still runs past it, so that its parameters are never lost.
        """
        for source in self.trial_sources:
            got = source(self)
            if got is not None:
                return got
        if self.cfg.max_trials is None:
            return self.study.ask(), False
        with study_lock(self.url, self.cfg.name):
            if self.n_study_trials() < self.cfg.max_trials or self._waiting_retries():
                return self.study.ask(), False
        return None

    def n_study_trials(self) -> int:
        """Trials of the study in every state, from every worker; a retry chain counts once
        (retries of dead trials never use up ``max_trials``, so completed = the cap)."""
        return sum(FAILED_TRIAL_KEY not in t.system_attrs for t in self.study.get_trials(deepcopy=False))

    def _waiting_retries(self) -> list[optuna.trial.FrozenTrial]:
        return [
            t for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) if FAILED_TRIAL_KEY in t.system_attrs
        ]

    def run_trial(self, trial: optuna.Trial, resume: bool = False) -> TrialOutcome:
        """Train ``trial`` and tell the study its outcome."""
        self.current = trial
        try:
            outcome = self.objective.run(trial, resume=resume)
        except BaseException as e:  # interrupted (Ctrl-C, SystemExit from a signal handler, ``interrupt``)
            self.heartbeat.stop()
            if not self.leave_running_on_exit:
                trial.set_user_attr("error", f"interrupted: {type(e).__name__}")
                self._tell(trial, TrialOutcome(TrialState.FAIL, error=f"interrupted: {type(e).__name__}"))
            raise
        finally:
            self.current = None
        self._tell(trial, outcome)
        return outcome

    def _tell(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        """Write the outcome's user attrs and tell the study, as one journal append (journal storage)."""
        try:
            with coalesced_writes(self.storage):
                for key, value in outcome.user_attrs.items():
                    trial.set_user_attr(key, value)
                if outcome.state == TrialState.COMPLETE:
                    self.study.tell(trial, outcome.values)
                else:
                    self.study.tell(trial, state=outcome.state)
        except (RuntimeError, ValueError) as e:
            # e.g. a reaper marked the trial failed while it ran: the storage keeps its verdict.
            _LOG.warning("trial %d: could not record %s (%s)", trial.number, outcome.state.name, e)

    def run(self, n_trials: int | None = None, timeout_s: float | None = None) -> RunSummary:
        """Run up to ``n_trials`` trials (``None``: until the timeout or the study cap).

        Before exiting (not after a timeout or an interrupt) the worker reaps dead trials once
        more, waiting for a trial that missed its beats to go stale, and runs the retries that
        wait, so that a trial killed near the end of a study is retried even when no other
        worker is left.
        """
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        if n_trials is None and timeout_s is None and self.cfg.max_trials is None:
            raise HpoError("give --n-trials, --timeout or max_trials in the study file; otherwise the worker never stops")
        summary = RunSummary(self.cfg.name)
        t_end = None if timeout_s is None else time.monotonic() + timeout_s
        last_best = -math.inf
        bar = tqdm(total=n_trials, desc=self.cfg.name, unit="trial", disable=not self.progress, file=sys.stderr)
        with bar, logging_redirect_tqdm():
            while n_trials is None or summary.n_trials < n_trials:
                if t_end is not None and time.monotonic() >= t_end:
                    summary.stopped = "timeout"
                    break
                got = self.start_trial()
                if got is None:
                    summary.stopped = "max_trials"
                    break
                if self.interrupt.is_set():
                    summary.stopped = "interrupted"
                    break
                if not self._run_counted(got, summary):
                    break
                bar.update(1)
                if self.progress and time.monotonic() - last_best >= 5.0:
                    # The study-wide best costs a query: refresh it every few seconds only.
                    bar.set_postfix_str(self._best_text(), refresh=True)
                    last_best = time.monotonic()
            if summary.stopped in ("n_trials", "max_trials") and n_trials != 0:  # 0: only create the study
                self._retry_before_exit(summary, t_end)
            if self.progress:
                bar.set_postfix_str(self._best_text(), refresh=True)
        summary.best_value = self.best_value()
        return summary

    def _run_counted(self, got: tuple[optuna.Trial, bool], summary: RunSummary) -> bool:
        """Run one trial and count it; ``False`` when it was interrupted (the worker stops)."""
        trial, resume = got
        try:
            outcome = self.run_trial(trial, resume)
        except TrialInterrupted:
            summary.stopped = "interrupted"
            summary.numbers.append(trial.number)
            return False
        summary.numbers.append(trial.number)
        if outcome.state == TrialState.COMPLETE:
            summary.n_complete += 1
        elif outcome.state == TrialState.PRUNED:
            summary.n_pruned += 1
        else:
            summary.n_failed += 1
        return True

    def _retry_before_exit(self, summary: RunSummary, t_end: float | None) -> None:
        hb = self.heartbeat
        while not self.interrupt.is_set():
            wait_s = hb.late_s()
            if t_end is not None:
                wait_s = min(wait_s, max(0.0, t_end - time.monotonic()))
            if wait_s > 0:
                _LOG.info("waiting %.0f s for a trial that missed its heartbeats to go stale", wait_s)
                self.interrupt.wait(wait_s)
            hb.reap()
            with study_lock(self.url, self.cfg.name):  # with max_trials, no other worker asks meanwhile
                if not self._waiting_retries():
                    return
                trial = self.study.ask()  # the oldest waiting trial
            summary.n_retries += 1
            if not self._run_counted((trial, False), summary):
                return

    def best_value(self) -> float | list[float] | None:
        try:
            if self.cfg.multi_objective:
                return [list(t.values) for t in self.study.best_trials] or None  # type: ignore[misc]  # one list per Pareto trial
            return self.study.best_value
        except ValueError:  # no completed trial yet
            return None

    def _best_text(self) -> str:
        if self.cfg.multi_objective:
            return f"pareto={len(self.study.best_trials)}"
        best = self.best_value()
        return "best=n/a" if best is None else f"best={best:.4g}"


def run_study(
    study: str | os.PathLike[str] | StudyConfig,
    n_trials: int | None = None,
    *,
    timeout_s: float | None = None,
    storage: str | None = None,
    collate: bool | None = None,
    progress: bool = True,
    hooks: tp.Sequence[TrialHook] = (),
    trial_sources: tp.Sequence[TrialSource] = (),
    leave_running_on_exit: bool = False,
) -> RunSummary:
    """Validate the study file, then run trials in this process and collate.

    Args:
        study: the study file (or an already validated :class:`StudyConfig`).
        n_trials: trials for this process (default: the file's ``n_trials``).
        timeout_s: stop starting trials after this many seconds (default: the file's ``timeout``).
        storage: a storage URL replacing the file's.
        collate: collate at the end (default: the file's ``collate_results``).
        progress, hooks, trial_sources, leave_running_on_exit: see :class:`Worker`.

    Raises:
        StudyConfigError: for an invalid study file or a changed search space, before any trial runs.
    """
    cfg = study if isinstance(study, StudyConfig) else load_study_config(study, storage=storage)
    _LOG.info("study %s: storage %s, trials in %s", cfg.name, mask_url(storage or cfg.storage), cfg.study_dir / "trials")
    worker = Worker(
        cfg,
        storage=storage,
        hooks=hooks,
        trial_sources=trial_sources,
        progress=progress,
        leave_running_on_exit=leave_running_on_exit,
    )
    summary = worker.run(n_trials if n_trials is not None else cfg.n_trials, timeout_s if timeout_s is not None else cfg.timeout)
    if cfg.collate_results if collate is None else collate:
        from hpo.collate import collate as collate_study

        collate_study(cfg, worker.study, storage=storage)
    return summary


def main(argv: tp.Sequence[str] | None = None, *, hooks_factory: tp.Callable[[], dict[str, tp.Any]] | None = None) -> int:
    """``python -m hpo.run`` / ``hpo-run``.

    ``hooks_factory()`` (e.g. :func:`slurm._preempt.worker_extensions`) returns extra keyword
    arguments of :func:`run_study` (hooks, trial_sources, leave_running_on_exit); its errors are fatal.
    """
    parser = argparse.ArgumentParser(prog="hpo-run", description="Run trials of an Optuna study from a study file.")
    parser.add_argument("--study", required=True, help="study YAML, e.g. studies/quickstart.yaml")
    parser.add_argument("--n-trials", type=int, default=None, help="trials for this process (default: the file's n_trials)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    parser.add_argument(
        "--storage",
        default=None,
        help="storage URL replacing the file's (sqlite:///, postgresql+psycopg://, "
        "journal:PATH); default $HPO_STORAGE, which keeps a password off the command line",
    )
    parser.add_argument("--no-collate", action="store_true", help="skip collation at the end")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_override_arguments(parser)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        overrides = override_list(args)
        study: tp.Any = args.study
        if overrides:
            study = load_study_config(args.study, storage=storage_url(args.storage), overrides=overrides)
            _LOG.info("study %s: command-line overrides %s", study.name, " ".join(overrides))
        summary = run_study(
            study,
            args.n_trials,
            timeout_s=args.timeout,
            storage=storage_url(args.storage),
            collate=False if args.no_collate else None,
            progress=not args.no_progress,
            **(hooks_factory() if hooks_factory is not None else {}),
        )
    except HpoError as e:
        print(f"hpo-run: error: {e}", file=sys.stderr)
        return 2
    best = summary.best_value
    best_text = "none yet" if best is None else (f"{best:.6g}" if isinstance(best, float) else f"{len(best)} Pareto-optimal")
    print(
        f"{summary.study}: this worker ran {summary.n_trials} trial(s) ({summary.n_complete} complete, "
        f"{summary.n_pruned} pruned, {summary.n_failed} failed; stopped by {summary.stopped}); best {best_text}"
    )
    if summary.stopped == "interrupted":
        return 1
    if summary.n_trials and summary.n_failed == summary.n_trials:
        print(
            f"hpo-run: error: every trial this worker ran failed ({summary.n_failed}); see the 'error' of the trials "
            f"in python -m hpo.report --study {args.study}",
            file=sys.stderr,
        )
        return 1
    return 0


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


if __name__ == "__main__":
    raise SystemExit(main())
