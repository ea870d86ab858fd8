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

With ``--trials-per-gpu k`` (several trials per GPU) k workers share each GPU: worker ``i`` gets
GPU ``i // k`` alone in its ``CUDA_VISIBLE_DEVICES`` and ``HPO_GPU_MEMORY_FRACTION=1/k`` in its
environment; the worker applies it with ``torch.cuda.set_per_process_memory_fraction`` when a
trial starts (:class:`GpuMemoryFraction`), importing nothing the trainable does not use.

Example::

    HPO_STORAGE=postgresql+psycopg://me@db/hpo python -m slurm.worker --study studies/decoder.yaml --n-trials 4
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import typing as tp

from hpo.objective import TrialHook

__all__ = ["GPU_MEMORY_FRACTION_ENV", "GpuMemoryFraction", "assign_gpus", "main", "run_packed", "visible_gpus"]

#: Environment variable holding the share of its GPU's memory a worker may use (``1/k``).
GPU_MEMORY_FRACTION_ENV = "HPO_GPU_MEMORY_FRACTION"

_log = logging.getLogger(__name__)


def visible_gpus(environ: tp.Mapping[str, str] | None = None) -> list[str]:
    """This task's GPUs: ``CUDA_VISIBLE_DEVICES`` as Slurm set it (empty when none)."""
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not value or value in ("NoDevFiles", "-1"):
        return []
    return [g for g in value.split(",") if g]


def assign_gpus(gpus: tp.Sequence[str], n_workers: int, trials_per_gpu: int = 1) -> list[list[str]]:
    """Share a task's GPUs out between ``n_workers`` packed workers, each getting its own.

    Worker ``i`` gets ``gpus[i*g:(i+1)*g]`` with ``g = len(gpus) // n_workers``, so every GPU of
    the task is used and none is shared. With fewer GPUs than workers they are shared round-robin
    (one each, with a warning); without GPUs every worker gets ``[]``.

    With ``trials_per_gpu = k > 1``, k workers share each GPU: worker ``i`` gets ``[gpus[i // k]]``
    (a task of ``n_workers`` asks for ``ceil(n_workers / k)`` GPUs; with fewer, the GPUs are shared
    round-robin with a warning, and extra ones stay idle).

    Example:
        >>> assign_gpus(["0", "1", "2", "3"], 2)
        [['0', '1'], ['2', '3']]
        >>> assign_gpus(["0", "1"], 4, trials_per_gpu=2)
        [['0'], ['0'], ['1'], ['1']]
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, but got {n_workers}")
    if trials_per_gpu < 1:
        raise ValueError(f"trials_per_gpu must be >= 1, but got {trials_per_gpu}")
    if not gpus:
        return [[] for _ in range(n_workers)]
    if trials_per_gpu > 1:
        need = math.ceil(n_workers / trials_per_gpu)
        if len(gpus) < need:
            _log.warning("%d workers at %d per GPU need %d GPUs but got %s", n_workers, trials_per_gpu, need, ",".join(gpus))
        elif len(gpus) > need:
            _log.warning("%d workers at %d per GPU: GPUs %s stay idle", n_workers, trials_per_gpu, ",".join(gpus[need:]))
        return [[gpus[(i // trials_per_gpu) % len(gpus)]] for i in range(n_workers)]
    per = len(gpus) // n_workers
    if per == 0:
        _log.warning("%d packed workers share %d GPUs (%s)", n_workers, len(gpus), ",".join(gpus))
        return [[gpus[i % len(gpus)]] for i in range(n_workers)]
    if len(gpus) % n_workers:
        _log.warning("%d GPUs for %d workers: GPUs %s stay idle", len(gpus), n_workers, ",".join(gpus[per * n_workers :]))
    return [list(gpus[i * per : (i + 1) * per]) for i in range(n_workers)]


def _without_storage(argv: tp.Sequence[str]) -> tuple[list[str], str | None]:
    """``argv`` without ``--storage URL`` / ``--storage=URL``, and that URL (None when absent)."""
    out: list[str] = []
    storage = None
    it = iter(argv)
    for a in it:
        if a == "--storage":
            storage = next(it, None)
        elif a.startswith("--storage="):
            storage = a.split("=", 1)[1]
        else:
            out.append(a)
    return out, storage


def run_packed(argv: tp.Sequence[str], n_workers: int, python: str = sys.executable, trials_per_gpu: int = 1) -> int:
    """Run ``n_workers`` ``python -m slurm.worker ARGV`` side by side; see the module docstring.

    With ``trials_per_gpu = k > 1`` each worker shares its GPU with k-1 others and gets
    ``HPO_GPU_MEMORY_FRACTION = 1/k`` in its environment.

    Returns:
        0 when every worker ended well; :data:`slurm._preempt.PREEMPTED_EXIT_CODE` when one was
        preempted (after requeueing the task once on SIGUSR2); otherwise the first bad status.
    """
    from hpo.study import STORAGE_ENV
    from slurm._preempt import PREEMPTED_EXIT_CODE, requeue_job

    argv, storage = _without_storage(argv)
    shares = assign_gpus(visible_gpus(), n_workers, trials_per_gpu)
    procs = []
    for i, share in enumerate(shares):
        env = {**os.environ, "HPO_WORKER_INDEX": str(i), "HPO_REQUEUE": "0"}  # the task requeues once, below
        if storage is not None:  # its password stays out of the children's command lines (ps)
            env[STORAGE_ENV] = storage
        if share:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(share)
        if trials_per_gpu > 1:  # also without CUDA_VISIBLE_DEVICES (a local run on a machine's GPU)
            env[GPU_MEMORY_FRACTION_ENV] = repr(1 / trials_per_gpu)
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


class GpuMemoryFraction(TrialHook):
    """Limit this worker to ``fraction`` of each visible GPU's memory when its trials use torch.

    Applied once per process, at the first trial start (or epoch) after the trainable imported
    torch; a worker whose trainable never imports torch never imports it here either.

    Args:
        fraction: share of the GPU's memory, in ``(0, 1]``.
    """

    def __init__(self, fraction: float) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"{GPU_MEMORY_FRACTION_ENV} must be in (0, 1], but got {fraction}")
        self.fraction = float(fraction)
        self.applied = False

    @classmethod
    def from_env(cls, environ: tp.Mapping[str, str] | None = None) -> GpuMemoryFraction | None:
        """The hook for ``HPO_GPU_MEMORY_FRACTION``, or ``None`` when it is unset.

        Raises:
            ValueError: naming the variable, when it is not a number in ``(0, 1]``.
        """
        env = os.environ if environ is None else environ
        value = env.get(GPU_MEMORY_FRACTION_ENV, "").strip()
        if not value:
            return None
        try:
            fraction = float(value)
        except ValueError:
            raise ValueError(f"{GPU_MEMORY_FRACTION_ENV} must be a number in (0, 1], but got {value!r}") from None
        return cls(fraction)

    def apply(self) -> bool:
        """Set the limit on every visible GPU if torch is loaded and sees CUDA; True once done."""
        torch = sys.modules.get("torch")
        if self.applied or torch is None:
            return self.applied
        if torch.cuda.is_available():
            for device in range(torch.cuda.device_count()):
                torch.cuda.set_per_process_memory_fraction(self.fraction, device)
            _log.info("GPU memory limited to %.3g of each of %d GPU(s)", self.fraction, torch.cuda.device_count())
        self.applied = True
        return True

    def on_trial_start(self, trial: tp.Any, run_dir: tp.Any, resume: bool) -> None:
        self.apply()

    def on_epoch(self, trial: tp.Any, epoch: int, metrics: dict[str, float]) -> None:
        self.apply()


def main(argv: tp.Sequence[str] | None = None) -> int:
    """``python -m slurm.worker [--workers-per-task K] [--trials-per-gpu k] HPO_RUN_ARGS…``."""
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="slurm-worker", add_help=False)
    p.add_argument("--workers-per-task", type=int, default=1)
    p.add_argument("--trials-per-gpu", type=int, default=1)
    known, rest = p.parse_known_args(argv)
    for flag, value in (("--workers-per-task", known.workers_per_task), ("--trials-per-gpu", known.trials_per_gpu)):
        if value < 1:
            print(f"slurm-worker: error: {flag} must be >= 1, but got {value}", file=sys.stderr)
            return 2
    if known.workers_per_task > 1 or known.trials_per_gpu > 1:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return run_packed(rest, known.workers_per_task, trials_per_gpu=known.trials_per_gpu)
    from hpo.run import main as run_main

    return run_main(rest, hooks_factory=_extensions)


def _extensions() -> dict[str, tp.Any]:
    """Slurm's worker extensions plus the GPU memory limit of ``HPO_GPU_MEMORY_FRACTION``."""
    from slurm._preempt import worker_extensions

    ext = worker_extensions()
    limit = GpuMemoryFraction.from_env()
    if limit is not None:
        ext["hooks"] = [*ext.get("hooks", ()), limit]
    return ext


if __name__ == "__main__":
    raise SystemExit(main())
