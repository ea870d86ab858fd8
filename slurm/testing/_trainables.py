"""Deterministic stand-ins for a real trainable, honouring the full trainable contract.

Both take a plain config dict and a ``callback(epoch, metrics)`` that may return ``"stop"`` /
``"checkpoint"``, write into ``config["run_dir"]`` and continue from their checkpoint when
``config["resume"]`` is true, so workers, pruning, heartbeats and preemption can be tested on
a cluster in seconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
import typing as tp
from pathlib import Path

import numpy as np

from runtools.io import write_json

_Callback = tp.Callable[[int, dict[str, float]], tp.Iterable[str] | None]


def sleep_trainable(
    config: dict[str, tp.Any], callback: _Callback | None = None, interrupt: threading.Event | None = None
) -> dict[str, tp.Any]:
    """Sleep ``sleep_s`` seconds per epoch for ``epochs`` epochs; loss ``(x - 0.3)**2``.

    Nothing to checkpoint: when ``interrupt`` is set it returns ``stopped == "interrupted"``
    after the current epoch, and a resumed run starts again.

    Config keys: ``sleep_s`` (2.0), ``epochs`` (1), ``x`` (0.0, the tuned value), ``run_dir``.
    """
    sleep_s = float(config.get("sleep_s", 2.0))
    epochs = int(config.get("epochs", 1))
    loss = (float(config.get("x", 0.0)) - 0.3) ** 2
    stopped = "max_epochs"
    metrics: dict[str, float] = {}
    for epoch in range(epochs):
        time.sleep(sleep_s)
        metrics = {"train_loss": loss, "val_loss": loss, "lr": 0.0}
        if "stop" in set((callback(epoch, metrics) if callback else None) or ()):
            stopped = "callback"
            break
        if interrupt is not None and interrupt.is_set():
            stopped = "interrupted"
            break
    return {"metrics": metrics, "epochs": epoch + 1, "best_epoch": epoch, "stopped": stopped, "run_dir": config.get("run_dir")}


def counter_trainable(
    config: dict[str, tp.Any], callback: _Callback | None = None, interrupt: threading.Event | None = None
) -> dict[str, tp.Any]:
    """A noisy "training" whose every batch depends on the RNG state: resume must be exact.

    Each epoch runs ``batches`` batches of ``epoch_s / batches`` seconds; batch ``b`` draws one
    normal number from a generator seeded with ``seed``. The loss of epoch ``e`` is
    ``(x - 0.3)**2 + y**2 + 1/(e+1) + 0.01 * mean(draws of the epoch)``. When the callback asks
    (``"checkpoint"``) the state is checkpointed to ``run_dir/checkpoint.json`` at the epoch's
    end; when ``interrupt`` is set it is checkpointed after the current batch (epoch, next batch,
    partial sums, generator state) and the function returns ``stopped == "interrupted"``, so a
    run stopped anywhere and resumed (``resume: true``) reports exactly the values of an
    uninterrupted run, and stops within one batch whatever the epoch length.

    At the end it writes ``model.safetensors`` (its "weights"), which collation keeps for the
    top-k trials.

    Config keys: ``epochs`` (5), ``epoch_s`` (0.5 s per epoch), ``batches`` (10 per epoch),
    ``x``, ``y`` (tuned), ``seed``, ``run_dir``, ``resume``. Appends to ``workers.jsonl``
    (process, GPUs, Slurm job of each start), ``epochs.jsonl`` (one line per epoch run) and
    ``interrupts.jsonl`` (where each interrupt stopped it), so tests can see who ran what.
    """
    run_dir = Path(config["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    _append(
        run_dir / "workers.jsonl",
        {
            "pid": os.getpid(),
            "resume": bool(config.get("resume")),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "worker_index": os.environ.get("HPO_WORKER_INDEX"),
            "gpu_memory_fraction": os.environ.get("HPO_GPU_MEMORY_FRACTION"),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
        },
    )
    ckpt = run_dir / "checkpoint.json"
    epochs = int(config.get("epochs", 5))
    batches = max(1, int(config.get("batches", 10)))
    batch_s = float(config.get("epoch_s", 0.5)) / batches
    base = (float(config.get("x", 0.0)) - 0.3) ** 2 + float(config.get("y", 0.0)) ** 2
    rng = np.random.default_rng(int(config.get("seed", 0)))
    epoch, batch, total, noise = 0, 0, 0.0, 0.0  # position and accumulators
    if config.get("resume") and ckpt.is_file():
        state = json.loads(ckpt.read_text())
        rng.bit_generator.state = state["rng"]
        epoch, batch, total, noise = int(state["epoch"]), int(state["batch"]), float(state["total"]), float(state["noise"])

    def save() -> None:
        write_json(ckpt, {"epoch": epoch, "batch": batch, "total": total, "noise": noise, "rng": rng.bit_generator.state})

    stopped = "max_epochs"
    metrics: dict[str, float] = {}
    while epoch < epochs:
        while batch < batches:
            time.sleep(batch_s)
            noise += float(rng.standard_normal())
            batch += 1
            if interrupt is not None and interrupt.is_set():
                save()
                _append(run_dir / "interrupts.jsonl", {"epoch": epoch, "batch": batch, "pid": os.getpid()})
                return {
                    "metrics": metrics,
                    "epochs": epoch,
                    "best_epoch": max(epoch - 1, 0),
                    "stopped": "interrupted",
                    "run_dir": str(run_dir),
                }
        loss = base + 1.0 / (epoch + 1) + 0.01 * noise / batches
        total += loss
        metrics = {"train_loss": total / (epoch + 1), "val_loss": loss, "lr": 1e-3}
        _append(run_dir / "epochs.jsonl", {"epoch": epoch, "pid": os.getpid(), "val_loss": loss})
        actions = set((callback(epoch, metrics) if callback else None) or ())
        epoch, batch, noise = epoch + 1, 0, 0.0
        if "checkpoint" in actions:
            save()
        if "stop" in actions:
            stopped = "callback"
            break
    _save_weights(run_dir / "model.safetensors", np.array([total, noise, float(epoch)]))
    return {"metrics": metrics, "epochs": epoch, "best_epoch": epoch - 1, "stopped": stopped, "run_dir": str(run_dir)}


def _save_weights(path: Path, weights: np.ndarray) -> None:
    """Write "weights" (safetensors, atomically) so that collation keeps the top-k trials' files."""
    from safetensors.numpy import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({"weights": weights}, str(tmp))
    os.replace(tmp, path)


def _append(path: Path, record: dict[str, tp.Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
