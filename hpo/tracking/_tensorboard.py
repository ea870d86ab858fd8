"""TensorBoard: one event folder per trial, ``<output_dir>/<study>/tensorboard/trial-<n>/``.

Point ``tensorboard --logdir <output_dir>/<study>/tensorboard`` at the study to compare its trials.
Scalars per epoch (step = epoch), the parameters, tags and state as text, and the trial's plots as
images; the best weights are listed by path (TensorBoard stores no files).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing as tp
from pathlib import Path

from hpo.tracking._base import Tracker, TrialRun
from runtools import schema

__all__ = ["TensorBoardTracker"]


@dataclasses.dataclass
class _Options:
    log_dir: str | None = schema.field(None, None, "parent of the per-trial folders (default <study_dir>/tensorboard)")


class TensorBoardTracker(Tracker):
    """Options: ``log_dir`` (default ``<study_dir>/tensorboard``)."""

    name = "tensorboard"
    module = "tensorboard"
    extra = "tensorboard"
    Options = _Options

    def __init__(self, study_dir: Path, options: dict[str, tp.Any]) -> None:
        super().__init__(study_dir, options)
        self.log_dir = Path(options.get("log_dir") or self.study_dir / "tensorboard")
        self._writer: tp.Any = None
        self._run: TrialRun | None = None

    def start(self, run: TrialRun) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._run = run
        self._writer = SummaryWriter(log_dir=str(self.log_dir / f"trial-{run.number}"))
        self._writer.add_text("params", _table(run.params), 0)
        self._writer.add_text("tags", _table({"study": run.study, **run.tags, "run_dir": str(run.run_dir)}), 0)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                self._writer.add_scalar(k, float(v), int(epoch))
        self._writer.flush()

    def finish(
        self, state: str, values: list[float] | None, plots: list[Path], weights: list[Path], error: str | None = None
    ) -> None:
        import matplotlib.image

        w = self._writer
        w.add_text("state", state + (f": {error}" if error else ""), 0)
        for i, v in enumerate(values or []):
            w.add_scalar(f"objective/{i}", float(v), 0)
        for f in plots:
            if f.suffix == ".png":
                img = matplotlib.image.imread(str(f))  # [H, W, C] floats in [0, 1]
                w.add_image(f"plots/{f.stem}", img[..., :3], 0, dataformats="HWC")
        if weights:
            w.add_text("weights", "\n".join(f"- {p}" for p in weights), 0)
        w.close()
        self._writer = None


def _table(d: dict[str, tp.Any]) -> str:
    return "| key | value |\n|---|---|\n" + "\n".join(
        f"| {k} | {json.dumps(v) if not isinstance(v, str) else v} |" for k, v in d.items()
    )
