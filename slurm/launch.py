"""Put ``hpo.run`` workers on a Slurm cluster (or on this machine) with submitit.

:class:`SlurmLauncher` submits ``workers`` workers of one study, each running
``python -m slurm.worker --study … --n-trials K`` (an :mod:`hpo.run` worker with Slurm's
preemption handling). With ``trials_per_node = G`` each job runs G workers side by side, each
pinned to its own ``gpus_per_task`` GPUs (default 1) through ``CUDA_VISIBLE_DEVICES`` (GPU
packing for nodes whose GPUs are too big for one trial). The storage URL travels in the
environment (``HPO_STORAGE``), never on a command line. Jobs go out as arrays that
respect the cluster's ``MaxArraySize``; ``array_parallelism`` caps how many run at once.
:meth:`SlurmLauncher.wait` shows a live view of the study (trials done / running / pruned /
failed, best value) until the jobs end.

Slurm options come from the study file's ``slurm:`` section (keys: see
:func:`slurm._sbatch.slurm_options`) and can be overridden per call.

Example:
    >>> launcher = SlurmLauncher("studies/decoder.yaml", workers=16, trials_per_worker=4)  # doctest: +SKIP
    >>> jobs = launcher.launch()
    >>> launcher.wait()
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo.errors import HpoError
from hpo.study import StudyConfig, add_override_arguments, load_study_config, mask_url, override_list
from slurm._preempt import PREEMPTED_EXIT_CODE
from slurm._sbatch import check_slurm_options, gpus_per_job, make_sbatch, plan_arrays, submitit_parameters

__all__ = ["JobWorkers", "LaunchSummary", "SlurmLauncher", "max_array_size", "study_counts"]

_log = logging.getLogger(__name__)

# A local job runs on the user's own machine: no time limit unless the study's ``slurm:`` section
# or ``--time-min`` sets one (Slurm's 60-minute default would kill a study's last trials).
LOCAL_TIMEOUT_MIN = 7 * 24 * 60


class JobWorkers:
    """What one job runs: ``python -m slurm.worker`` with ``n_workers`` packed workers.

    A picklable callable for submitit. One worker runs in this process (its preemption handler
    replaces submitit's, requeues the job itself and ends the process with a ``SystemExit``, so
    submitit records no result); several run as child processes, each with its own GPUs
    (:func:`slurm.worker.run_packed`). It holds no secret: the storage URL reaches the job
    through the environment (``HPO_STORAGE``), never through this pickled object.

    Args:
        argv: the ``hpo.run`` command line (after ``python -m hpo.run``).
        n_workers: workers in this job (the launcher's ``trials_per_node``).
        env: extra environment variables for the workers (no secrets: they are pickled to disk).
        trials_per_gpu: workers sharing one GPU (:func:`slurm.worker.assign_gpus`).
    """

    def __init__(self, argv: list[str], n_workers: int = 1, env: dict[str, str] | None = None, trials_per_gpu: int = 1) -> None:
        self.argv = list(argv)
        self.n_workers = int(n_workers)
        self.env = dict(env or {})
        self.trials_per_gpu = int(trials_per_gpu)

    def __call__(self) -> dict[str, tp.Any]:
        from slurm.worker import main as worker_main
        from slurm.worker import visible_gpus

        os.environ.update(self.env)
        packing = ["--workers-per-task", str(self.n_workers), "--trials-per-gpu", str(self.trials_per_gpu)]
        code = worker_main([*packing, *self.argv])
        if code == PREEMPTED_EXIT_CODE:
            raise SystemExit(code)  # no result: the requeued job runs again
        if code != 0:
            raise RuntimeError(f"slurm.worker exited with status {code} (see this job's log)")
        return {"exit_code": code, "gpus": visible_gpus(), "host": os.uname().nodename}


class LaunchSummary(tp.NamedTuple):
    """Counts of the study's trials by state, and its best value."""

    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    best: float | None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


def study_counts(study: optuna.Study) -> LaunchSummary:
    """The study's trial counts by state and best value (single objective)."""
    n = {s: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        n[t.state] += 1
    try:
        best = study.best_value if len(study.directions) == 1 else None
    except ValueError:
        best = None
    return LaunchSummary(
        n[TrialState.COMPLETE], n[TrialState.PRUNED], n[TrialState.FAIL], n[TrialState.RUNNING], n[TrialState.WAITING], best
    )


class SlurmLauncher:
    """Submit the workers of one study to Slurm (or run them locally) and follow them.

    Args:
        study: the study file.
        workers: worker processes in total.
        trials_per_worker: ``--n-trials`` of each worker.
        executor: ``"slurm"`` or ``"local"`` (processes on this machine, same workers; their
            time limit is ``time_min`` only where the study or ``slurm`` sets it).
        trials_per_node: workers per job (GPU packing), each with its own ``gpus_per_task``
            GPUs (default 1 when packing); ``workers`` is rounded up to a multiple of it. The
            ``slurm:`` option ``trials_per_gpu`` (``--trials-per-gpu``) lets k of them share a GPU.
        storage: storage URL replacing the study's; it reaches the workers as ``HPO_STORAGE`` in
            their environment, never on a command line or in a file.
        slurm: options overriding the study's ``slurm:`` section.
        array_parallelism: at most this many jobs run at once (``None``: all).
        folder: submitit's folder for job files and logs (default
            ``<output_dir>/<study>/slurm``).
        run_args: extra ``hpo.run`` arguments.
        overrides: ``KEY=VALUE`` study-file overrides (``--set``, ``--sampler``, ``--pruner``),
            validated with the file before anything is submitted and passed to every worker.
        env: environment variables for the workers (e.g. ``HPO_HEARTBEAT_S``).

    Raises:
        StudyConfigError: for a bad study file or ``slurm:`` option, before anything is submitted.
    """

    def __init__(
        self,
        study: str | os.PathLike[str],
        *,
        workers: int,
        trials_per_worker: int,
        executor: str = "slurm",
        trials_per_node: int = 1,
        storage: str | None = None,
        slurm: dict[str, tp.Any] | None = None,
        array_parallelism: int | None = None,
        folder: str | os.PathLike[str] | None = None,
        run_args: tp.Sequence[str] = (),
        env: dict[str, str] | None = None,
        overrides: tp.Sequence[str] = (),
    ) -> None:
        if executor not in ("slurm", "local"):
            raise HpoError(f"executor must be 'slurm' or 'local', but got {executor!r}")
        if workers < 1 or trials_per_worker < 1 or trials_per_node < 1:
            raise HpoError(
                f"workers, trials_per_worker and trials_per_node must be >= 1, but got "
                f"{workers}, {trials_per_worker}, {trials_per_node}"
            )
        self.study_path = Path(study).resolve()
        secret = [o for o in overrides if o.split("=", 1)[0].strip() == "storage"]
        if secret:
            raise HpoError(
                f"--set {secret[0].split('=', 1)[0]}=...: the storage URL would be written into every worker's "
                "command line; pass it with --storage or $HPO_STORAGE"
            )
        self.overrides = list(overrides)
        self.cfg: StudyConfig = load_study_config(self.study_path, storage=storage, overrides=self.overrides)
        self.storage = storage
        section = dict(self.cfg.raw.get("slurm") or {})
        section.update(slurm or {})
        self.options = check_slurm_options(section, where="slurm")
        self.local_timeout_min = int(section.get("time_min", LOCAL_TIMEOUT_MIN))
        self.executor_name = executor
        self.trials_per_node = trials_per_node
        self.n_jobs = math.ceil(workers / trials_per_node)
        self.workers = self.n_jobs * trials_per_node
        self.trials_per_worker = trials_per_worker
        self.array_parallelism = array_parallelism
        self.folder = Path(folder) if folder else (self.cfg.study_dir / "slurm").resolve()
        self.run_args = [*(a for o in self.overrides for a in ("--set", o)), *run_args]
        self.env = dict(env or {})
        self.jobs: list[tp.Any] = []

    @property
    def report_path(self) -> Path:
        """Where ``python -m hpo.report`` writes the study's report."""
        return self.cfg.study_dir / "report.html"

    def worker_argv(self) -> list[str]:
        """The worker's arguments; never the storage (see :meth:`launch`)."""
        return ["--study", str(self.study_path), "--n-trials", str(self.trials_per_worker), "--no-progress", *self.run_args]

    @property
    def gpus_per_job(self) -> int:
        """GPUs each job asks for: every packed worker gets its own ``gpus_per_task`` (default 1), or
        ``ceil(trials_per_node / trials_per_gpu)`` when ``trials_per_gpu`` workers share a GPU."""
        return gpus_per_job(self.options["gpus_per_task"], self.trials_per_node, self.options["trials_per_gpu"])

    def launch(self) -> list[tp.Any]:
        """Submit every job; returns the submitit jobs (also kept in ``self.jobs``)."""
        worker = JobWorkers(self.worker_argv(), self.trials_per_node, self.env, int(self.options["trials_per_gpu"]))
        self.folder.mkdir(parents=True, exist_ok=True)
        with _storage_in_environment(self.storage):
            return self._submit(worker)

    def _submit(self, worker: JobWorkers) -> list[tp.Any]:
        import submitit

        opts = self.options
        if self.executor_name == "local":
            local = submitit.LocalExecutor(folder=str(self.folder))
            local.update_parameters(timeout_min=self.local_timeout_min)
            with local.batch():
                jobs = [local.submit(worker) for _ in range(self.n_jobs)]
            self.jobs = list(jobs)
        else:
            if shutil.which("sbatch") is None:
                raise HpoError("sbatch not found: run on a Slurm login node, or use --executor local")
            params = submitit_parameters(
                opts, gpus_per_job=self.gpus_per_job, cpus_per_job=int(opts["cpus_per_task"]) * self.trials_per_node
            )
            self.jobs = []
            for start, count, parallel in plan_arrays(self.n_jobs, max_array_size(), self.array_parallelism):
                ex = submitit.SlurmExecutor(folder=str(self.folder))  # fresh: executors keep old parameters
                ex.update_parameters(**params, array_parallelism=parallel)
                with ex.batch():
                    jobs = [ex.submit(worker) for _ in range(count)]
                self.jobs += jobs
                _log.info("array of %d job(s) from worker %d: %s", count, start, jobs[0].job_id.split("_")[0])
        return self.jobs

    def job_ids(self) -> list[str]:
        """The Slurm ids (``ARRAY_TASK``) or local process ids of the submitted jobs."""
        return [str(j.job_id) for j in self.jobs]

    def open_study(self) -> optuna.Study:
        from hpo.study import make_storage

        return optuna.load_study(study_name=self.cfg.name, storage=make_storage(self.storage or self.cfg.storage))

    def wait(self, progress: bool = True, poll_s: float = 2.0, timeout_s: float | None = None) -> LaunchSummary:
        """Follow the study until every job ended; returns the final counts.

        Raises:
            HpoError: when ``timeout_s`` passes first (the jobs keep running).
        """
        from tqdm.auto import tqdm

        total = self.workers * self.trials_per_worker
        t_end = None if timeout_s is None else time.monotonic() + timeout_s
        study = None
        counts = LaunchSummary(0, 0, 0, 0, 0, None)
        with tqdm(total=total, desc=self.cfg.name, unit="trial", disable=not progress, file=sys.stderr) as bar:
            while True:
                done = all(j.done() for j in self.jobs)
                try:
                    study = study or self.open_study()
                    counts = study_counts(study)
                except KeyError:  # the first worker has not created the study yet
                    pass
                bar.n = min(counts.finished, total)
                best = "n/a" if counts.best is None else f"{counts.best:.4g}"
                bar.set_postfix_str(
                    f"running={counts.running} pruned={counts.pruned} failed={counts.failed} "
                    f"jobs={sum(not j.done() for j in self.jobs)} best={best}",
                    refresh=True,
                )
                if done:
                    break
                if t_end is not None and time.monotonic() > t_end:
                    raise HpoError(f"{self.cfg.name}: jobs {', '.join(self.job_ids())} still running after {timeout_s} s")
                time.sleep(poll_s)
        for job in self.jobs:
            error = job.exception()
            if error is not None:
                _log.warning(
                    "job %s failed (%s); log: %s", job.job_id, str(error).strip().splitlines()[-1][:200], job.paths.stdout
                )
        return counts

    def sbatch_script(self) -> str:
        """An equivalent plain sbatch array script (for clusters where submitit is unwelcome)."""
        o = self.options
        par = f"%{self.array_parallelism}" if self.array_parallelism else ""
        return make_sbatch(
            study=str(self.study_path),
            n_trials=self.trials_per_worker,
            workers_per_task=self.trials_per_node,
            array=f"0-{self.n_jobs - 1}{par}",
            run_args=self.run_args,
            **{k: o[k] for k in o},
        )

    def describe(self) -> str:
        """One paragraph for the terminal: what was submitted and where results go."""
        kind = "Slurm job(s)" if self.executor_name == "slurm" else "local process(es)"
        ids = self.job_ids()
        shown = ", ".join(ids[:8]) + (f", … ({len(ids)} in all)" if len(ids) > 8 else "")
        return (
            f"{self.cfg.name}: {len(self.jobs)} {kind} [{shown}], {self.workers} worker(s) × "
            f"{self.trials_per_worker} trial(s); storage {mask_url(self.storage or self.cfg.storage)}\n"
            f"logs: {self.folder}\n"
            f"report: python -m hpo.report --study {self.study_path}"
            f"{''.join(f' --set {shlex.quote(o)}' for o in self.overrides)} → {self.report_path}"
        )


def max_array_size(default: int = 1001) -> int:
    """The cluster's ``MaxArraySize`` from ``scontrol show config`` (``default`` if unknown)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return default
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(m.group(1)) if m else default


@contextlib.contextmanager
def _storage_in_environment(storage: str | None) -> tp.Iterator[None]:
    """Export ``HPO_STORAGE`` while jobs are submitted: ``sbatch`` and local processes inherit
    it, so the URL (and its password) is on no command line and in no pickled or written file."""
    if not storage:
        yield
        return
    before = os.environ.get("HPO_STORAGE")
    os.environ["HPO_STORAGE"] = storage
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HPO_STORAGE", None)
        else:
            os.environ["HPO_STORAGE"] = before


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m hpo.launch`` / ``hpo-launch``."""
    import argparse

    p = argparse.ArgumentParser(prog="hpo-launch", description="Run the workers of a study on Slurm (submitit) or locally.")
    p.add_argument("--study", required=True, help="study YAML")
    p.add_argument("--workers", type=int, default=1, help="worker processes in total")
    p.add_argument("--trials-per-worker", type=int, default=1, help="--n-trials of each worker")
    p.add_argument("--executor", choices=("slurm", "local"), default="slurm")
    p.add_argument(
        "--trials-per-node",
        type=int,
        default=1,
        help="workers per job (GPU packing), each pinned to its own --gpus-per-task GPUs",
    )
    p.add_argument(
        "--storage",
        default=os.environ.get("HPO_STORAGE") or None,
        help="storage URL replacing the study's (default: $HPO_STORAGE; prefer the variable, a command line shows in ps)",
    )
    p.add_argument("--array-parallelism", type=int, default=None, help="at most this many jobs at once")
    for key, default in (("partition", None), ("account", None), ("qos", None), ("constraint", None)):
        p.add_argument(f"--{key}", default=default)
    p.add_argument("--time-min", type=int, default=None, help="walltime per job, minutes")
    p.add_argument("--mem-gb", type=float, default=None, help="memory per job, GB")
    p.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per worker")
    p.add_argument(
        "--gpus-per-task", type=int, default=None, help="GPUs per worker (default: 1 each with --trials-per-node > 1, else none)"
    )
    p.add_argument(
        "--trials-per-gpu",
        type=int,
        default=None,
        metavar="K",
        help="K workers of a job share one GPU, each limited to 1/K of its memory (the job asks for "
        "ceil(trials-per-node / K) GPUs)",
    )
    p.add_argument("--setup", action="append", default=None, help="shell line run before the workers (repeatable)")
    p.add_argument("--folder", default=None, help="submitit folder for job files and logs")
    p.add_argument(
        "--sbatch-script", default=None, metavar="PATH", help="write an equivalent sbatch array script to PATH and submit nothing"
    )
    p.add_argument("--wait", action="store_true", help="follow the study until the jobs end")
    p.add_argument("--no-progress", action="store_true", help="with --wait: no live view")
    add_override_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {
        k: getattr(args, k)
        for k in (
            "partition",
            "account",
            "qos",
            "constraint",
            "time_min",
            "mem_gb",
            "cpus_per_task",
            "gpus_per_task",
            "trials_per_gpu",
            "setup",
        )
        if getattr(args, k) is not None
    }
    try:
        launcher = SlurmLauncher(
            args.study,
            workers=args.workers,
            trials_per_worker=args.trials_per_worker,
            executor=args.executor,
            trials_per_node=args.trials_per_node,
            storage=args.storage,
            slurm=overrides,
            array_parallelism=args.array_parallelism,
            folder=args.folder,
            overrides=override_list(args),
        )
        if args.sbatch_script:
            from runtools.io import write_text

            write_text(args.sbatch_script, launcher.sbatch_script())
            env = f"HPO_STORAGE='{mask_url(args.storage)}' " if args.storage else ""
            print(
                f"wrote {args.sbatch_script} ({launcher.n_jobs} array task(s) × {launcher.trials_per_node} "
                f"worker(s)); submit it with: mkdir -p {launcher.options['log_dir']} && {env}sbatch "
                f"{args.sbatch_script}" + (" (the storage goes through the environment, never the file)" if env else "")
            )
            return 0
        launcher.launch()
        print(launcher.describe(), flush=True)
        if args.wait:
            counts = launcher.wait(progress=not args.no_progress)
            best = "n/a" if counts.best is None else f"{counts.best:.6g}"
            print(
                f"{launcher.cfg.name}: {counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed, "
                f"{counts.running} running; best {best}"
            )
    except HpoError as e:
        print(f"hpo-launch: error: {e}", file=sys.stderr)
        return 2
    return 0
