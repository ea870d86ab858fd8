"""Slurm options of a study: validation, the sbatch text, submitit parameters, array chunks.

The keyword arguments of :func:`make_sbatch` *are* the valid options of a study file's
``slurm:`` section (as in submitit, :func:`slurm_options` reads them from the signature), so a
new option is one keyword. Everything here is a pure function, tested without a cluster.
"""

from __future__ import annotations

import inspect
import math
import re
import shlex
import typing as tp

from hpo.errors import StudyConfigError
from hpo.study import register_section

__all__ = [
    "check_slurm_options",
    "gpus_per_job",
    "gpus_per_worker",
    "make_sbatch",
    "plan_arrays",
    "slurm_options",
    "submitit_parameters",
]

#: Options written into ``#SBATCH`` lines: a newline, blank or quote there ends the line early,
#: starts a shell command or turns the rest into another option, so only these characters pass.
_SBATCH_VALUE = re.compile(r"[A-Za-z0-9_.,:+@%/=~&|!()*\[\]-]+")
_SBATCH_KEYS = ("job_name", "partition", "account", "qos", "constraint", "log_dir")


def make_sbatch(
    *,
    study: str,
    n_trials: int = 1,
    workers_per_task: int = 1,
    array: str | None = None,
    job_name: str = "hpo",
    partition: str | None = None,
    account: str | None = None,
    qos: str | None = None,
    time_min: int = 60,
    mem_gb: float | None = None,
    cpus_per_task: int = 1,
    gpus_per_task: int | None = None,
    trials_per_gpu: int = 1,
    constraint: str | None = None,
    log_dir: str = "slurm_logs",
    signal_delay_s: int = 120,
    setup: tp.Sequence[str] = (),
    python: str = "python",
    run_args: tp.Sequence[str] = (),
) -> str:
    """Render a ready-to-submit sbatch script that runs ``python -m slurm.worker`` per array task.

    The storage URL is never written into the script: the worker reads ``HPO_STORAGE`` from the
    environment that ``sbatch`` passes on (or uses the study file's), so no password lands in the
    file, on a command line (``ps``) or in ``scontrol show job``.

    Args:
        study: path of the study file.
        n_trials: trials per worker (``--n-trials``).
        workers_per_task: workers each array task runs side by side (GPU packing); each gets
            its own ``gpus_per_task`` of the task's GPUs.
        array: ``--array`` spec such as ``"0-15%4"``; ``None`` submits a single task.
        job_name: Slurm job name (``%x`` in log names).
        partition, account, qos, constraint: the usual Slurm selectors.
        time_min: walltime in minutes.
        mem_gb: memory per node in GB (``None``: the cluster's default).
        cpus_per_task: CPUs per worker (the task asks for ``cpus_per_task × workers_per_task``).
        gpus_per_task: GPUs per worker (the task asks for ``--gres=gpu:N×workers_per_task``;
            Slurm sets CUDA_VISIBLE_DEVICES). ``None``: one per worker when packing, else none.
        trials_per_gpu: workers sharing one GPU (``k``): the task asks for
            ``ceil(workers_per_task / k)`` GPUs, worker ``i`` gets GPU ``i // k`` and may use
            ``1/k`` of its memory (``HPO_GPU_MEMORY_FRACTION``); see :func:`gpus_per_job`.
        log_dir: folder of the ``%x_%A_%a.out`` logs (must exist when the job starts).
        signal_delay_s: seconds of warning (SIGUSR2) before the walltime, to checkpoint.
        setup: shell lines run before the worker (``module load …``, ``source venv/bin/activate``).
        python: the interpreter to run.
        run_args: extra arguments for ``hpo.run``.

    Returns:
        The script text.

    Raises:
        StudyConfigError: for a value that would break an ``#SBATCH`` line.
    """
    bad = _sbatch_value_errors(
        {
            "job_name": job_name,
            "partition": partition,
            "account": account,
            "qos": qos,
            "constraint": constraint,
            "log_dir": log_dir,
        }
    )
    if bad:
        raise StudyConfigError("\n".join(f"{p}: {m}" for p, m in bad), bad)
    workers_per_task = int(workers_per_task)
    if workers_per_task < 1:
        raise ValueError(f"workers_per_task must be >= 1, but got {workers_per_task}")
    gpus = gpus_per_job(gpus_per_task, workers_per_task, trials_per_gpu)
    h = ["#!/bin/bash", f"#SBATCH --job-name={job_name}"]
    out = f"{log_dir.rstrip('/')}/%x_%A_%a.out" if array else f"{log_dir.rstrip('/')}/%x_%j.out"
    h += [f"#SBATCH --output={out}", "#SBATCH --open-mode=append", "#SBATCH --requeue"]
    h.append(f"#SBATCH --signal=B:USR2@{int(signal_delay_s)}")
    if array:
        h.append(f"#SBATCH --array={array}")
    for flag, value in (("partition", partition), ("account", account), ("qos", qos), ("constraint", constraint)):
        if value:
            h.append(f"#SBATCH --{flag}={value}")
    h.append(f"#SBATCH --time={_walltime(time_min)}")
    h.append(f"#SBATCH --cpus-per-task={int(cpus_per_task) * workers_per_task}")
    if mem_gb:
        h.append(f"#SBATCH --mem={int(round(float(mem_gb) * 1024))}M")
    if gpus:
        h.append(f"#SBATCH --gres=gpu:{gpus}")
    body = [
        "",
        "# Written by `python -m hpo.launch --sbatch-script PATH`; submit with `sbatch PATH`.",
        "# Storage: the study file's, or HPO_STORAGE exported in the submitting shell (never put a",
        "# password in this file or on a command line).",
        "set -eo pipefail",
    ]
    body += list(setup)
    cmd = [python, "-m", "slurm.worker"]
    if workers_per_task > 1:
        cmd += ["--workers-per-task", str(workers_per_task)]
    if int(trials_per_gpu) > 1:
        cmd += ["--trials-per-gpu", str(int(trials_per_gpu))]
    cmd += ["--study", study, "--n-trials", str(int(n_trials)), "--no-progress", *run_args]
    body.append(
        'echo "[hpo] job ${SLURM_JOB_ID} task ${SLURM_ARRAY_TASK_ID:-0} restart ${SLURM_RESTART_COUNT:-0} '
        'on $(hostname) CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-none}"'
    )
    body.append("# ignore USR2 until the worker installs its handler (it would kill the task meanwhile)")
    body.append("trap '' USR2")
    body.append("# exec: the worker is the batch shell, so it receives --signal=B:USR2 itself")
    body.append("exec " + shlex.join(cmd))
    return "\n".join(h + body) + "\n"


def slurm_options() -> dict[str, tp.Any]:
    """Valid keys of a study's ``slurm:`` section with their defaults (from :func:`make_sbatch`)."""
    params = inspect.signature(make_sbatch).parameters
    return {n: p.default for n, p in params.items() if n not in _NOT_OPTIONS}


#: make_sbatch arguments that come from the launcher, not from the study's ``slurm:`` section.
_NOT_OPTIONS = ("study", "n_trials", "workers_per_task", "array", "run_args")


def gpus_per_worker(gpus_per_task: int | None, workers_per_task: int) -> int:
    """GPUs each worker gets: ``gpus_per_task``, or by default 1 when packing and 0 otherwise."""
    if gpus_per_task is None:
        return 1 if workers_per_task > 1 else 0
    return int(gpus_per_task)


def gpus_per_job(gpus_per_task: int | None, workers_per_task: int, trials_per_gpu: int = 1) -> int:
    """GPUs a job (array task) of ``workers_per_task`` packed workers asks for.

    With ``trials_per_gpu = k > 1`` (several workers share a GPU) it is ``ceil(workers_per_task / k)``
    and each worker uses one GPU; otherwise every worker gets its own :func:`gpus_per_worker`.

    Raises:
        ValueError: for ``trials_per_gpu < 1``, or ``k > 1`` with more than one GPU per worker.

    Example:
        >>> gpus_per_job(None, 4, 2), gpus_per_job(None, 3, 2), gpus_per_job(2, 2)
        (2, 2, 4)
    """
    k = int(trials_per_gpu)
    if k < 1:
        raise ValueError(f"trials_per_gpu must be >= 1, but got {trials_per_gpu}")
    if k == 1:
        return gpus_per_worker(gpus_per_task, workers_per_task) * workers_per_task
    if gpus_per_task not in (None, 1):
        raise ValueError(f"trials_per_gpu={k} shares one GPU between workers: gpus_per_task must be 1, but got {gpus_per_task}")
    return math.ceil(int(workers_per_task) / k)


def _sbatch_value_errors(values: tp.Mapping[str, tp.Any], where: str = "slurm") -> list[tuple[str, str]]:
    errors = []
    for key, value in values.items():
        if value is None or (key != "job_name" and value == ""):
            continue
        if not isinstance(value, str) or not _SBATCH_VALUE.fullmatch(value):
            errors.append(
                (
                    f"{where}.{key}",
                    f"must be one word of letters, digits and _.,:+@%/=~&|!()*[]- "
                    f"(it goes into an #SBATCH line), but got {value!r}",
                )
            )
    return errors


def check_slurm_options(options: tp.Mapping[str, tp.Any], where: str = "slurm") -> dict[str, tp.Any]:
    """Validate a ``slurm:`` section; return it merged over the defaults.

    Raises:
        StudyConfigError: listing every unknown key (with the valid ones) and bad value.
    """
    valid = slurm_options()
    errors: list[tuple[str, str]] = []
    for key, value in options.items():
        path = f"{where}.{key}"
        if key not in valid:
            listing = ", ".join(f"{k}={v!r}" for k, v in valid.items())
            errors.append((path, f"unknown option; valid options (default) are {listing}"))
        elif (
            key in ("time_min", "cpus_per_task", "gpus_per_task", "signal_delay_s")
            and (not isinstance(value, int) or isinstance(value, bool) or value < 0)
            and not (key == "gpus_per_task" and value is None)
        ):
            errors.append((path, f"must be a non-negative integer, but got {value!r}"))
        elif key == "trials_per_gpu" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            errors.append((path, f"must be a positive integer, but got {value!r}"))
        elif key == "mem_gb" and value is not None and (not isinstance(value, (int, float)) or value <= 0):
            errors.append((path, f"must be a positive number of GB, but got {value!r}"))
        elif key == "setup" and (isinstance(value, str) or not all(isinstance(v, str) for v in value)):
            errors.append((path, f"must be a list of shell lines, but got {value!r}"))
        elif key in _SBATCH_KEYS:
            errors += _sbatch_value_errors({key: value}, where)
    merged = {**valid, **options}
    if not errors and merged["trials_per_gpu"] > 1 and merged["gpus_per_task"] not in (None, 1):
        errors.append(
            (
                f"{where}.trials_per_gpu",
                f"{merged['trials_per_gpu']} workers share one GPU, so gpus_per_task must be 1 or unset, "
                f"but got {merged['gpus_per_task']!r}",
            )
        )
    if errors:
        raise StudyConfigError("\n".join(f"{p}: {m}" for p, m in errors), errors)
    return merged


def submitit_parameters(options: tp.Mapping[str, tp.Any], *, gpus_per_job: int, cpus_per_job: int) -> dict[str, tp.Any]:
    """Translate checked ``slurm:`` options into ``SlurmExecutor.update_parameters`` kwargs.

    Args:
        options: the output of :func:`check_slurm_options`.
        gpus_per_job: GPUs each job asks for (``gpus_per_worker × packed workers``).
        cpus_per_job: CPUs each job asks for (``cpus_per_task`` × packed workers).
    """
    params: dict[str, tp.Any] = {
        "job_name": options["job_name"],
        "time": int(options["time_min"]),
        "cpus_per_task": int(cpus_per_job),
        "signal_delay_s": int(options["signal_delay_s"]),
        "setup": list(options["setup"]),
        "additional_parameters": {"requeue": True},
    }
    for key in ("partition", "account", "qos", "constraint"):
        if options.get(key):
            params[key] = options[key]
    if options.get("mem_gb"):
        params["mem"] = f"{int(round(float(options['mem_gb']) * 1024))}MB"
    if gpus_per_job:
        params["gres"] = f"gpu:{int(gpus_per_job)}"
    return params


def plan_arrays(n_jobs: int, max_array_size: int, array_parallelism: int | None = None) -> list[tuple[int, int, int]]:
    """Split ``n_jobs`` array tasks into arrays the cluster accepts.

    Slurm rejects array indices ``>= MaxArraySize``, so each array holds at most that many tasks.
    ``array_parallelism`` caps how many tasks of *all* arrays run at once; it is shared out
    between the arrays (each gets at least 1).

    Returns:
        ``(first_worker, n_tasks, parallelism)`` per array.

    Example:
        >>> plan_arrays(2500, 1001, 300)
        [(0, 1001, 120), (1001, 1001, 120), (2002, 498, 59)]
    """
    if n_jobs < 1 or max_array_size < 1:
        raise ValueError(f"n_jobs and max_array_size must be >= 1, but got {n_jobs}, {max_array_size}")
    limit = array_parallelism if array_parallelism and array_parallelism > 0 else n_jobs
    chunks = [(start, min(max_array_size, n_jobs - start)) for start in range(0, n_jobs, max_array_size)]
    plan = []
    for start, count in chunks:
        share = max(1, min(count, (limit * count) // n_jobs))
        plan.append((start, count, share))
    return plan


def _walltime(minutes: int) -> str:
    days, rest = divmod(int(minutes), 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


def _validate_section(value: tp.Any) -> list[tuple[str, str]]:
    """Validator of a study file's ``slurm:`` section for :func:`hpo.study.load_study_config`."""
    if not isinstance(value, dict):
        return [("slurm", f"must be a mapping of Slurm options, but got {type(value).__name__}")]
    try:
        check_slurm_options(value)
    except StudyConfigError as e:
        return list(e.errors)
    return []


register_section("slurm", _validate_section)
