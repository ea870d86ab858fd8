"""Put ``hpo.run`` workers on a Slurm cluster (or on this machine) with submitit.

:class:`SlurmLauncher` submits ``workers`` workers of one study, each running
``python -m hpo.run --study … --n-trials K``. With ``trials_per_node = G`` each job runs G
workers side by side, each pinned to one of the job's GPUs through ``CUDA_VISIBLE_DEVICES``
(GPU packing for nodes whose GPUs are too big for one trial). Jobs go out as arrays that
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

import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo.errors import HpoError
from hpo.study import StudyConfig, load_study_config, mask_url
from slurm._sbatch import check_slurm_options, make_sbatch, plan_arrays, submitit_parameters

__all__ = ["JobWorkers", "LaunchSummary", "SlurmLauncher", "max_array_size", "study_counts"]

_log = logging.getLogger(__name__)

#: Exit status of a preempted, checkpointed ``hpo.run`` (see ``hpo._preempt``).
_PREEMPTED = 75


class JobWorkers:
    """What one job runs: ``n_workers`` ``hpo.run`` processes, each pinned to one GPU.

    A picklable callable for submitit. It forwards SIGUSR2 / SIGTERM to its processes, waits
    for them to checkpoint, and when one of them was preempted it requeues the job once
    (``scontrol requeue``) and exits without a result, so that submitit runs it again; the
    restarted processes have the same worker keys and resume their trials.

    Args:
        argv: the ``hpo.run`` command line (after ``python -m hpo.run``).
        n_workers: processes in this job (the launcher's ``trials_per_node``).
        env: extra environment variables for the processes.
        python: the interpreter.
    """

    def __init__(self, argv: list[str], n_workers: int = 1, env: dict[str, str] | None = None,
                 python: str = sys.executable) -> None:
        self.argv = list(argv)
        self.n_workers = int(n_workers)
        self.env = dict(env or {})
        self.python = python

    def __call__(self) -> dict[str, tp.Any]:
        gpus = _visible_gpus()
        if self.n_workers == 1:
            return self._run_here(gpus)
        if gpus and len(gpus) < self.n_workers:
            _log.warning("%d workers share %d GPUs (%s)", self.n_workers, len(gpus), ",".join(gpus))
        procs = []
        for i in range(self.n_workers):
            env = {**os.environ, **self.env, "HPO_PREEMPTION": "1"}
            if self.n_workers > 1:
                env["HPO_WORKER_INDEX"] = str(i)
                env["HPO_REQUEUE"] = "0"  # the job requeues once, below
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
            procs.append(subprocess.Popen([self.python, "-m", "hpo.run", *self.argv], env=env))
        received: list[int] = []

        def forward(signum: int, frame: tp.Any) -> None:
            received.append(signum)
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGUSR2, signal.SIGTERM)}
        try:
            codes = [p.wait() for p in procs]
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        if _PREEMPTED in codes:
            if self.n_workers > 1 and signal.SIGUSR2 in received and os.environ.get("SLURM_JOB_ID"):
                subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=False, timeout=60)
            # No result: submitit must not see this run as finished; the requeued job runs again.
            raise SystemExit(_PREEMPTED)
        failed = [c for c in codes if c != 0]
        if failed:
            raise RuntimeError(f"hpo.run exited with status {failed} (see this job's log)")
        return {"exit_codes": codes, "gpus": gpus, "host": os.uname().nodename}


    def _run_here(self, gpus: list[str]) -> dict[str, tp.Any]:
        """One worker: run ``hpo.run`` in this process (one interpreter start-up less).

        Its preemption hook replaces submitit's signal handlers, requeues the job itself and
        ends the process with a ``SystemExit``, so submitit records no result.
        """
        from hpo.run import main as run_main

        os.environ.update({**self.env, "HPO_PREEMPTION": "1"})
        code = run_main(self.argv)
        if code != 0:
            raise RuntimeError(f"hpo.run exited with status {code} (see this job's log)")
        return {"exit_codes": [code], "gpus": gpus, "host": os.uname().nodename}


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
    return LaunchSummary(n[TrialState.COMPLETE], n[TrialState.PRUNED], n[TrialState.FAIL],
                         n[TrialState.RUNNING], n[TrialState.WAITING], best)


class SlurmLauncher:
    """Submit the workers of one study to Slurm (or run them locally) and follow them.

    Args:
        study: the study file.
        workers: worker processes in total.
        trials_per_worker: ``--n-trials`` of each worker.
        executor: ``"slurm"`` or ``"local"`` (processes on this machine, same workers).
        trials_per_node: workers per job, one GPU each (GPU packing); ``workers`` is rounded
            up to a multiple of it.
        storage: storage URL replacing the study's (use PGPASSWORD/.pgpass for passwords).
        slurm: options overriding the study's ``slurm:`` section.
        array_parallelism: at most this many jobs run at once (``None``: all).
        folder: submitit's folder for job files and logs (default
            ``<output_dir>/<study>/slurm``).
        run_args: extra ``hpo.run`` arguments.
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
    ) -> None:
        if executor not in ("slurm", "local"):
            raise HpoError(f"executor must be 'slurm' or 'local', but got {executor!r}")
        if workers < 1 or trials_per_worker < 1 or trials_per_node < 1:
            raise HpoError(f"workers, trials_per_worker and trials_per_node must be >= 1, but got "
                           f"{workers}, {trials_per_worker}, {trials_per_node}")
        self.study_path = Path(study).resolve()
        self.cfg: StudyConfig = load_study_config(self.study_path, storage=storage)
        self.storage = storage
        section = dict(self.cfg.raw.get("slurm") or {})
        section.update(slurm or {})
        self.options = check_slurm_options(section, where="slurm")
        self.executor_name = executor
        self.trials_per_node = trials_per_node
        self.n_jobs = math.ceil(workers / trials_per_node)
        self.workers = self.n_jobs * trials_per_node
        self.trials_per_worker = trials_per_worker
        self.array_parallelism = array_parallelism
        self.folder = Path(folder) if folder else (self.cfg.study_dir / "slurm").resolve()
        self.run_args = list(run_args)
        self.env = dict(env or {})
        self.jobs: list[tp.Any] = []

    @property
    def report_path(self) -> Path:
        """Where ``python -m hpo.report`` writes the study's report."""
        return self.cfg.study_dir / "report.html"

    def worker_argv(self) -> list[str]:
        argv = ["--study", str(self.study_path), "--n-trials", str(self.trials_per_worker), "--no-progress"]
        if self.storage:
            argv += ["--storage", self.storage]
        return argv + self.run_args

    def launch(self) -> list[tp.Any]:
        """Submit every job; returns the submitit jobs (also kept in ``self.jobs``)."""
        import submitit

        worker = JobWorkers(self.worker_argv(), self.trials_per_node, self.env)
        self.folder.mkdir(parents=True, exist_ok=True)
        opts = self.options
        if self.executor_name == "local":
            ex = submitit.LocalExecutor(folder=str(self.folder))
            ex.update_parameters(timeout_min=int(opts["time_min"]))
            with ex.batch():
                jobs = [ex.submit(worker) for _ in range(self.n_jobs)]
            self.jobs = list(jobs)
        else:
            if shutil.which("sbatch") is None:
                raise HpoError("sbatch not found: run on a Slurm login node, or use --executor local")
            params = submitit_parameters(opts, gpus_per_job=int(opts["gpus_per_task"]) * self.trials_per_node
                                         or 0, cpus_per_job=int(opts["cpus_per_task"]) * self.trials_per_node)
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
                bar.set_postfix_str(f"running={counts.running} pruned={counts.pruned} failed={counts.failed} "
                                    f"jobs={sum(not j.done() for j in self.jobs)} best={best}", refresh=True)
                if done:
                    break
                if t_end is not None and time.monotonic() > t_end:
                    raise HpoError(f"{self.cfg.name}: jobs {', '.join(self.job_ids())} still running after {timeout_s} s")
                time.sleep(poll_s)
        for job in self.jobs:
            error = job.exception()
            if error is not None:
                _log.warning("job %s failed (%s); log: %s", job.job_id, str(error).strip().splitlines()[-1][:200],
                             job.paths.stdout)
        return counts

    def sbatch_script(self) -> str:
        """An equivalent plain sbatch array script (for clusters where submitit is unwelcome)."""
        o = self.options
        par = f"%{self.array_parallelism}" if self.array_parallelism else ""
        return make_sbatch(study=str(self.study_path), n_trials=self.trials_per_worker, storage=self.storage,
                           array=f"0-{self.n_jobs - 1}{par}", run_args=self.run_args,
                           **{k: o[k] for k in o})

    def describe(self) -> str:
        """One paragraph for the terminal: what was submitted and where results go."""
        kind = "Slurm job(s)" if self.executor_name == "slurm" else "local process(es)"
        ids = self.job_ids()
        shown = ", ".join(ids[:8]) + (f", … ({len(ids)} in all)" if len(ids) > 8 else "")
        return (f"{self.cfg.name}: {len(self.jobs)} {kind} [{shown}], {self.workers} worker(s) × "
                f"{self.trials_per_worker} trial(s); storage {mask_url(self.storage or self.cfg.storage)}\n"
                f"logs: {self.folder}\n"
                f"report: python -m hpo.report --study {self.study_path} → {self.report_path}")


def max_array_size(default: int = 1001) -> int:
    """The cluster's ``MaxArraySize`` from ``scontrol show config`` (``default`` if unknown)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return default
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(m.group(1)) if m else default


def _visible_gpus() -> list[str]:
    """This job's GPUs: ``CUDA_VISIBLE_DEVICES`` as Slurm set it (empty when none)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not value or value in ("NoDevFiles", "-1"):
        return []
    return [g for g in value.split(",") if g]


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m hpo.launch`` / ``hpo-launch``."""
    import argparse

    p = argparse.ArgumentParser(prog="hpo-launch", description="Run the workers of a study on Slurm (submitit) or locally.")
    p.add_argument("--study", required=True, help="study YAML")
    p.add_argument("--workers", type=int, default=1, help="worker processes in total")
    p.add_argument("--trials-per-worker", type=int, default=1, help="--n-trials of each worker")
    p.add_argument("--executor", choices=("slurm", "local"), default="slurm")
    p.add_argument("--trials-per-node", type=int, default=1, help="workers per job, each pinned to one GPU")
    p.add_argument("--storage", default=None, help="storage URL replacing the study's")
    p.add_argument("--array-parallelism", type=int, default=None, help="at most this many jobs at once")
    for key, default in (("partition", None), ("account", None), ("qos", None), ("constraint", None)):
        p.add_argument(f"--{key}", default=default)
    p.add_argument("--time-min", type=int, default=None, help="walltime per job, minutes")
    p.add_argument("--mem-gb", type=float, default=None, help="memory per job, GB")
    p.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per worker")
    p.add_argument("--gpus-per-task", type=int, default=None, help="GPUs per worker (packing uses 1)")
    p.add_argument("--setup", action="append", default=None, help="shell line run before the workers (repeatable)")
    p.add_argument("--folder", default=None, help="submitit folder for job files and logs")
    p.add_argument("--sbatch-script", default=None, metavar="PATH",
                   help="write an equivalent sbatch array script to PATH and submit nothing")
    p.add_argument("--wait", action="store_true", help="follow the study until the jobs end")
    p.add_argument("--no-progress", action="store_true", help="with --wait: no live view")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: getattr(args, k) for k in ("partition", "account", "qos", "constraint", "time_min", "mem_gb",
                                               "cpus_per_task", "gpus_per_task", "setup") if getattr(args, k) is not None}
    try:
        launcher = SlurmLauncher(args.study, workers=args.workers, trials_per_worker=args.trials_per_worker,
                                 executor=args.executor, trials_per_node=args.trials_per_node, storage=args.storage,
                                 slurm=overrides, array_parallelism=args.array_parallelism, folder=args.folder)
        if args.sbatch_script:
            from fspnet._io import write_text

            write_text(args.sbatch_script, launcher.sbatch_script())
            print(f"wrote {args.sbatch_script}; submit it with: mkdir -p {launcher.options['log_dir']} && "
                  f"sbatch {args.sbatch_script}")
            return 0
        launcher.launch()
        print(launcher.describe(), flush=True)
        if args.wait:
            counts = launcher.wait(progress=not args.no_progress)
            best = "n/a" if counts.best is None else f"{counts.best:.6g}"
            print(f"{launcher.cfg.name}: {counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed, "
                  f"{counts.running} running; best {best}")
    except HpoError as e:
        print(f"hpo-launch: error: {e}", file=sys.stderr)
        return 2
    return 0
