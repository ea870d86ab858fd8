"""The tracker contract: what :class:`hpo.tracking.TrackingHook` relies on from every tracker."""

from __future__ import annotations

import math
import typing as tp
from pathlib import Path

from hpo.tracking import Tracker, TrialRun

__all__ = ["check_tracker"]


def check_tracker(make: tp.Callable[[Path], Tracker], folder: Path) -> None:
    """Run one worker's sequence of trials through a tracker built by ``make(study_dir)``.

    Three trials in a row on the same tracker object (COMPLETE with a plot and weights, PRUNED,
    FAIL with an error), metrics that include non-finite and non-numeric values (skipped, not
    fatal), a trial with no parameters, and a resumed trial. Raises on any failure; what the
    tracker recorded is read back by each tracker's own test through its library's reader.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study_dir = folder / "study"
    run_dir = study_dir / "trials" / "0"
    run_dir.mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(run_dir / "loss_curve.png")
    plt.close(fig)
    (run_dir / "best.safetensors").write_bytes(b"\x00" * 16)
    tracker = make(study_dir)
    cases: list[tuple[dict[str, tp.Any], str, str | None, bool]] = [
        ({"lr": 0.1, "act": "relu", "layers": 3}, "COMPLETE", None, False),
        ({}, "PRUNED", None, False),
        ({"lr": 1.0}, "FAIL", "RuntimeError: CUDA out of memory", False),
        ({"lr": 0.1, "act": "relu", "layers": 3}, "COMPLETE", None, True),
    ]
    for number, (params, state, error, resume) in enumerate(cases):
        n = 0 if resume else number
        tracker.start(TrialRun("contract", n, params, {"trial": str(n), "worker": "w0", "git_commit": "abc"}, run_dir, resume))
        for epoch in range(3):
            # a NaN and a non-number too: trackers must skip what they cannot log
            metrics: dict[str, tp.Any] = {"val_loss": 1.0 / (epoch + 1), "train_loss": math.nan if epoch == 1 else 2.0}
            metrics.update(lr=0.1, note="text")
            tracker.log_epoch(epoch, metrics)
        values = [0.33] if state == "COMPLETE" else None
        plots = [run_dir / "loss_curve.png"] if state == "COMPLETE" else []
        weights = [run_dir / "best.safetensors"] if state == "COMPLETE" else []
        tracker.finish(state, values, plots, weights, error=error)
