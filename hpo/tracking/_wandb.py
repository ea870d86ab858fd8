"""Weights & Biases, offline by default: one run per trial, grouped by study, under
``<output_dir>/<study>/wandb/``; ``wandb sync <output_dir>/<study>/wandb/offline-run-*`` uploads them
later from a machine with internet.
"""

from __future__ import annotations

import dataclasses
import math
import typing as tp
from pathlib import Path

from hpo.tracking._base import Tracker, TrialRun
from runtools import schema

__all__ = ["WandbTracker"]


@dataclasses.dataclass
class _Options:
    mode: tp.Literal["offline", "online", "disabled"] = schema.field("offline", None, "offline (default), online or disabled")
    project: str | None = schema.field(None, None, "W&B project (default: the study name)")
    entity: str | None = schema.field(None, None, "W&B entity (team or user)")
    dir: str | None = schema.field(None, None, "parent of the wandb/ folder (default <study_dir>)")


class WandbTracker(Tracker):
    """Options: ``mode`` (offline, the default; online; disabled), ``project`` (default the study
    name), ``entity``, ``dir`` (default ``<study_dir>``: runs go to ``<dir>/wandb/``)."""

    name = "wandb"
    module = "wandb"
    extra = "wandb"
    Options = _Options

    def __init__(self, study_dir: Path, options: dict[str, tp.Any]) -> None:
        super().__init__(study_dir, options)
        self._run: tp.Any = None

    def start(self, run: TrialRun) -> None:
        import wandb

        where = Path(self.options.get("dir") or self.study_dir)
        where.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            mode=self.options.get("mode", "offline"),
            project=str(self.options.get("project") or run.study),
            entity=self.options.get("entity"),
            group=run.study,
            name=f"trial-{run.number}",
            job_type="trial",
            dir=str(where),
            config={**run.params, "hpo": {"study": run.study, **run.tags, "run_dir": str(run.run_dir)}},
            tags=[f"trial-{run.number}"] + (["resumed"] if run.resume else []),
            settings=wandb.Settings(silent=True, x_disable_stats=True, console="off"),
            reinit="create_new",
        )

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._run.log(
            {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}, step=int(epoch)
        )

    def finish(
        self, state: str, values: list[float] | None, plots: list[Path], weights: list[Path], error: str | None = None
    ) -> None:
        import wandb

        run = self._run
        run.summary["optuna_state"] = state
        if error:
            run.summary["optuna_error"] = error[:4000]
        for i, v in enumerate(values or []):
            run.summary[f"objective_{i}"] = float(v)
        images = {f"plots/{f.stem}": wandb.Image(str(f)) for f in plots if f.suffix == ".png"}
        if images:
            run.log(images, commit=True)
        if weights:
            art = wandb.Artifact(f"{run.group}-trial-{run.name.removeprefix('trial-')}-weights", type="model")
            for f in weights:
                art.add_file(str(f))
            run.log_artifact(art)
        run.finish(exit_code=0 if state in ("COMPLETE", "PRUNED") else 1)
        self._run = None
