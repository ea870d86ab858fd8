"""Tiny but real trainables for tests and benchmarks.

:func:`linear_regression` fits a linear model to fixed synthetic data by (momentum) gradient
descent. It follows the full trainable contract (per-epoch callback with ``stop`` and
``checkpoint``, run-dir artifacts, exact resume) in milliseconds, so studies that use it test
:mod:`hpo` itself rather than a network.
"""

from __future__ import annotations

import json
import math
import threading
import time
import typing as tp
from pathlib import Path

import numpy as np

from runtools.io import atomic_path, write_json

__all__ = ["linear_regression", "instant"]

DEFAULTS: dict[str, tp.Any] = {
    "lr": 0.05,
    "momentum": 0.0,
    "epochs": 9,
    "n_features": 8,
    "n_samples": 256,
    "noise": 0.1,
    "fail": False,
    "fail_at_epoch": 0,
    "sleep_s": 0.0,
    "plots": False,
    "checkpoint_every_epoch": True,
    "run_dir": None,
    "seed": 0,
    "resume": False,
    "quick_scan": None,
}


def linear_regression(
    config: dict[str, tp.Any],
    callback: tp.Callable[..., tp.Any] | None = None,
    *,
    interrupt: threading.Event | None = None,
) -> dict[str, tp.Any]:
    """Gradient descent on least squares; ``val_loss`` is the validation MSE after each epoch.

    Config keys (all optional): ``lr``, ``momentum``, ``epochs``, ``n_features``,
    ``n_samples``, ``noise``; ``fail`` raises ``RuntimeError`` at ``fail_at_epoch``;
    ``sleep_s`` per epoch; ``plots`` writes ``loss_curve.png``; ``run_dir``, ``seed``,
    ``resume``, ``quick_scan`` as in the trainable contract.

    An epoch is one full-batch step after ``sleep_s`` (the simulated epoch time). When
    ``interrupt`` is set, the sleep ends at once and the function checkpoints the state the
    epoch started from and returns ``stopped == "interrupted"``; resuming runs that epoch, so
    the values equal an uninterrupted run's.
    """
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"linear_regression: unknown config keys {sorted(unknown)}; valid are {', '.join(DEFAULTS)}")
    c = {**DEFAULTS, **config}
    run_dir = Path(c["run_dir"] or "runs/linear_regression")
    run_dir.mkdir(parents=True, exist_ok=True)
    n = int(c["quick_scan"] or c["n_samples"])
    data = np.random.default_rng(1234)  # the data are the same for every trial
    w_true = data.normal(size=c["n_features"])
    x = data.normal(size=(n, c["n_features"]))
    y = x @ w_true + c["noise"] * data.normal(size=n)
    n_val = max(1, n // 4)
    xt, yt, xv, yv = x[n_val:], y[n_val:], x[:n_val], y[:n_val]
    rng = np.random.default_rng(int(c["seed"]))
    w = 0.1 * rng.normal(size=c["n_features"])
    v = np.zeros_like(w)
    history: list[dict[str, float]] = []
    start, best, best_epoch = 0, math.inf, -1
    ckpt = run_dir / "checkpoint.json"
    if c["resume"] and ckpt.is_file():
        state = json.loads(ckpt.read_text())
        w, v = np.array(state["w"]), np.array(state["v"])
        history, start, best, best_epoch = state["history"], state["epoch"] + 1, state["best"], state["best_epoch"]
    stopped = "max_epochs"
    for epoch in range(start, int(c["epochs"])):
        if c["fail"] and epoch >= int(c["fail_at_epoch"]):
            raise RuntimeError(f"linear_regression: failing at epoch {epoch} as configured")
        if c["sleep_s"]:
            if interrupt is not None:
                interrupt.wait(float(c["sleep_s"]))  # returns early when interrupted
            else:
                time.sleep(float(c["sleep_s"]))
        if interrupt is not None and interrupt.is_set():  # keep where this epoch starts
            state = {"w": w, "v": v, "history": history, "epoch": epoch - 1, "best": best, "best_epoch": best_epoch}
            write_json(ckpt, state)
            stopped = "interrupted"
            break
        grad = 2 * xt.T @ (xt @ w - yt) / len(yt)
        v = c["momentum"] * v - c["lr"] * grad
        w = w + v
        train_loss = float(np.mean((xt @ w - yt) ** 2))
        val_loss = float(np.mean((xv @ w - yv) ** 2))
        if not math.isfinite(val_loss):
            raise FloatingPointError(f"linear_regression: diverged at epoch {epoch} with lr={c['lr']}")
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if val_loss < best:
            best, best_epoch = val_loss, epoch
            _save_weights(run_dir / "best.safetensors", w)
        requests = (
            set(callback(epoch, {"train_loss": train_loss, "val_loss": val_loss, "lr": c["lr"]}) or ()) if callback else set()
        )
        if "checkpoint" in requests or "stop" in requests or c["checkpoint_every_epoch"]:
            write_json(ckpt, {"w": w, "v": v, "history": history, "epoch": epoch, "best": best, "best_epoch": best_epoch})
        if "stop" in requests:
            stopped = "callback"
            break
    write_json(run_dir / "metrics.json", history)
    if c["plots"]:
        _plot(run_dir, history)
    return {
        "metrics": {"val_loss": best, "train_loss": history[-1]["train_loss"] if history else math.nan},
        "best_epoch": best_epoch,
        "epochs": len(history),
        "run_dir": str(run_dir),
        "stopped": stopped,
    }


def instant(
    config: dict[str, tp.Any],
    callback: tp.Callable[..., tp.Any] | None = None,
    *,
    interrupt: threading.Event | None = None,
) -> dict[str, tp.Any]:
    """A trainable that does no work: ``epochs`` callbacks of a closed-form loss in ``x``, ``y``.

    Used by the overhead benchmark, where only the cost of :mod:`hpo` itself should show. It
    has no state to checkpoint: when ``interrupt`` is set it returns ``stopped ==
    "interrupted"`` before the next epoch.
    """
    x, y = float(config.get("x", 0.0)), float(config.get("y", 0.0))
    loss = (x - 1.0) ** 2 + (y + 2.0) ** 2
    epochs = int(config.get("epochs", 3))
    for epoch in range(epochs):
        if interrupt is not None and interrupt.is_set():
            return {"metrics": {"val_loss": loss}, "epochs": epoch, "stopped": "interrupted"}
        requests = set(callback(epoch, {"val_loss": loss * (1 + 1.0 / (epoch + 1))}) or ()) if callback else set()
        if "stop" in requests:
            return {"metrics": {"val_loss": loss}, "epochs": epoch + 1, "stopped": "callback"}
    return {"metrics": {"val_loss": loss}, "epochs": epochs, "stopped": "max_epochs"}


def _save_weights(path: Path, w: np.ndarray) -> None:
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file({"w": np.ascontiguousarray(w, dtype=np.float64)}, str(tmp))


def _plot(run_dir: Path, history: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([h["val_loss"] for h in history])
    ax.set(xlabel="epoch", ylabel="val loss", yscale="log")
    with atomic_path(run_dir / "loss_curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=60)
    plt.close(fig)


linear_regression.defaults = DEFAULTS  # type: ignore[attr-defined]  # lets hpo check tune_params paths
