"""Deterministic stand-ins for a real trainable, honouring the full trainable contract.

Both take a plain config dict and a ``callback(epoch, metrics)`` that may return ``"stop"`` /
``"checkpoint"``, write into ``config["run_dir"]`` and continue from their checkpoint when
``config["resume"]`` is true, so workers, pruning, heartbeats and preemption can be tested on
a cluster in seconds.
"""

from __future__ import annotations

import json
import os
import time
import typing as tp
from pathlib import Path

import numpy as np

from fspnet._io import write_json

_Callback = tp.Callable[[int, dict[str, float]], tp.Optional[tp.Iterable[str]]]


def sleep_trainable(config: dict[str, tp.Any], callback: _Callback | None = None) -> dict[str, tp.Any]:
    """Sleep ``sleep_s`` seconds per epoch for ``epochs`` epochs; loss ``(x - 0.3)**2``.

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
    return {"metrics": metrics, "epochs": epoch + 1, "best_epoch": epoch, "stopped": stopped,
            "run_dir": config.get("run_dir")}


def counter_trainable(config: dict[str, tp.Any], callback: _Callback | None = None) -> dict[str, tp.Any]:
    """A noisy "training" whose every epoch depends on the RNG state: resume must be exact.

    The loss of epoch ``e`` is ``(x - 0.3)**2 + y**2 + 1/(e+1)`` plus noise drawn from a
    generator seeded with ``seed``; the generator state, the epoch and the running sum are
    checkpointed to ``run_dir/checkpoint.json`` (atomically) when the callback asks, so a run
    stopped and resumed reports exactly the values of an uninterrupted run.

    Config keys: ``epochs`` (5), ``epoch_s`` (0.5 s of sleep per epoch), ``x``, ``y`` (tuned),
    ``seed``, ``run_dir``, ``resume``. Appends to ``workers.jsonl`` (process, GPUs, Slurm job of
    each start) and ``epochs.jsonl`` (one line per epoch run), so tests can see who ran what.
    """
    run_dir = Path(config["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "workers.jsonl", "a") as f:  # who ran it, on which GPU (tests check pinning)
        f.write(json.dumps({"pid": os.getpid(), "resume": bool(config.get("resume")),
                            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                            "worker_index": os.environ.get("HPO_WORKER_INDEX"),
                            "slurm_job": os.environ.get("SLURM_JOB_ID")}) + "\n")
    ckpt = run_dir / "checkpoint.json"
    epochs = int(config.get("epochs", 5))
    epoch_s = float(config.get("epoch_s", 0.5))
    base = (float(config.get("x", 0.0)) - 0.3) ** 2 + float(config.get("y", 0.0)) ** 2
    rng = np.random.default_rng(int(config.get("seed", 0)))
    start, total = 0, 0.0
    if config.get("resume") and ckpt.is_file():
        state = json.loads(ckpt.read_text())
        rng.bit_generator.state = state["rng"]
        start, total = int(state["epoch"]) + 1, float(state["total"])
    stopped = "max_epochs"
    metrics: dict[str, float] = {}
    epoch = start - 1
    for epoch in range(start, epochs):
        time.sleep(epoch_s)
        loss = base + 1.0 / (epoch + 1) + 0.01 * float(rng.standard_normal())
        total += loss
        metrics = {"train_loss": total / (epoch + 1), "val_loss": loss, "lr": 1e-3}
        with open(run_dir / "epochs.jsonl", "a") as f:
            f.write(json.dumps({"epoch": epoch, "pid": os.getpid(), "val_loss": loss}) + "\n")
        actions = set((callback(epoch, metrics) if callback else None) or ())
        if "checkpoint" in actions:
            write_json(ckpt, {"epoch": epoch, "total": total, "rng": rng.bit_generator.state})
        if "stop" in actions:
            stopped = "callback"
            break
    return {"metrics": metrics, "epochs": epoch + 1, "best_epoch": epoch, "stopped": stopped, "run_dir": str(run_dir)}
