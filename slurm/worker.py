"""``python -m slurm.worker``: an :mod:`hpo.run` worker with Slurm's fault tolerance, or several.

What ``slurm/launch_hpo.sbatch``, the written sbatch scripts and the submitit launcher run in
each Slurm task. It takes the arguments of ``python -m hpo.run`` and hands the worker Slurm's
parts explicitly (:func:`slurm._preempt.worker_extensions`: checkpoint-on-signal, resume of the
same trial after a requeue, a worker key stable across requeues); failing to build them is
fatal. The storage URL comes from ``--storage`` or, better, from ``HPO_STORAGE`` in the
environment, so that no password shows in ``ps`` or ``scontrol show job``.

With ``--workers-per-task K`` (GPU packing) it starts K such workers side by side, gives each
its own share of the task's GPUs through ``CUDA_VISIBLE_DEVICES`` (worker ``i`` of a task
holding ``K × g`` GPUs gets GPUs ``i·g … i·g+g-1``), forwards SIGUSR2 / SIGTERM to them and,
when one was preempted after a SIGUSR2, requeues the task once.

Example::

    HPO_STORAGE=postgresql+psycopg://me@db/hpo python -m slurm.worker --study studies/decoder.yaml --n-trials 4
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import typing as tp

__all__ = ["assign_gpus", "main", "run_packed", "visible_gpus"]

_log = logging.getLogger(__name__)


def visible_gpus(environ: tp.Mapping[str, str] | None = None) -> list[str]:
    """This task's GPUs: ``CUDA_VISIBLE_DEVICES`` as Slurm set it (empty when none)."""
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not value or value in ("NoDevFiles", "-1"):
        return []
    return [g for g in value.split(",") if g]


def assign_gpus(gpus: tp.Sequence[str], n_workers: int) -> list[list[str]]:
    """Share a task's GPUs out between ``n_workers`` packed workers, each getting its own.

    Worker ``i`` gets ``gpus[i*g:(i+1)*g]`` with ``g = len(gpus) // n_workers``, so every GPU of
    the task is used and none is shared. With fewer GPUs than workers they are shared round-robin
    (one each, with a warning); without GPUs every worker gets ``[]``.

    Example:
        >>> assign_gpus(["0", "1", "2", "3"], 2)
        [['0', '1'], ['2', '3']]
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, but got {n_workers}")
    if not gpus:
        return [[] for _ in range(n_workers)]
    per = len(gpus) // n_workers
    if per == 0:
        _log.warning("%d packed workers share %d GPUs (%s)", n_workers, len(gpus), ",".join(gpus))
        return [[gpus[i % len(gpus)]] for i in range(n_workers)]
    if len(gpus) % n_workers:
        _log.warning("%d GPUs for %d workers: GPUs %s stay idle", len(gpus), n_workers, ",".join(gpus[per * n_workers :]))
    return [list(gpus[i * per : (i + 1) * per]) for i in range(n_workers)]


def run_packed(argv: tp.Sequence[str], n_workers: int, python: str = sys.executable) -> int:
    """Run ``n_workers`` ``python -m slurm.worker ARGV`` side by side; see the module docstring.

    Returns:
        0 when every worker ended well; :data:`slurm._preempt.PREEMPTED_EXIT_CODE` when one was
        preempted (after requeueing the task once on SIGUSR2); otherwise the first bad status.
    """
    from slurm._preempt import PREEMPTED_EXIT_CODE, requeue_job

    shares = assign_gpus(visible_gpus(), n_workers)
    procs = []
    for i, share in enumerate(shares):
        env = {**os.environ, "HPO_WORKER_INDEX": str(i), "HPO_REQUEUE": "0"}  # the task requeues once, below
        if share:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(share)
        # USR2 ignored until the child installs its handler (by default it would kill it).
        procs.append(subprocess.Popen([python, "-m", "slurm.worker", *argv], env=env, preexec_fn=_ignore_usr2))
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
    if PREEMPTED_EXIT_CODE in codes:
        if signal.SIGUSR2 in received:
            requeue_job()
        return PREEMPTED_EXIT_CODE
    bad = [c for c in codes if c != 0]
    if bad:
        _log.error("packed workers exited with status %s", codes)
        return bad[0] if bad[0] > 0 else 1
    return 0


def _ignore_usr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m slurm.worker [--workers-per-task K] HPO_RUN_ARGS…``."""
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="slurm-worker", add_help=False)
    p.add_argument("--workers-per-task", type=int, default=1)
    known, rest = p.parse_known_args(argv)
    if known.workers_per_task < 1:
        print(f"slurm-worker: error: --workers-per-task must be >= 1, but got {known.workers_per_task}", file=sys.stderr)
        return 2
    if known.workers_per_task > 1:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return run_packed(rest, known.workers_per_task)
    from hpo.run import main as run_main
    from slurm._preempt import worker_extensions

    return run_main(rest, hooks_factory=worker_extensions)


if __name__ == "__main__":
    raise SystemExit(main())
