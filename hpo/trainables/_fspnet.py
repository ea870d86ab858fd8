"""The ``"fspnet"`` trainable: :func:`fspnet.train.train` on configs from :mod:`fspnet.config`."""

from __future__ import annotations

import copy
import threading
import typing as tp
from pathlib import Path

from hpo.trainables._base import Callback, Trainable

__all__ = ["FspnetTrainable"]

_ARCH_SECTIONS = ("decoder.architecture.", "encoder.architecture.")


def _flatten(d: dict[str, tp.Any], prefix: str = "") -> dict[str, tp.Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; dotted keys stay as they are; dict-typed leaves that
    the trainer stores whole (``architecture``, ``generate.config``) are flattened too, which
    :func:`fspnet.config.set_path` recreates."""
    out: dict[str, tp.Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = copy.deepcopy(value)
    return out


class FspnetTrainable(Trainable):
    """Adapter over :func:`fspnet.train.train`.

    The base config is ``config_file`` (default ``configs/fspnet.yaml`` when it exists, else
    the trainer defaults) with the study's ``config:`` section applied as dotted-path
    overrides, validated by :func:`fspnet.config.load_config`. Architecture knobs live under
    ``decoder.architecture`` / ``encoder.architecture`` and become the network JSON through
    :func:`fspnet.nets.decoder_config` / ``encoder_config`` inside the trainer.
    """

    name = "fspnet"
    default_config_file = Path("configs/fspnet.yaml")

    def load_config(self, config: dict[str, tp.Any] | None, config_file: Path | None) -> dict[str, tp.Any]:
        from fspnet.config import load_config

        if config_file is None and self.default_config_file.is_file():
            config_file = self.default_config_file
        return load_config(config_file, _flatten(config or {}))

    def check_config(self, config: dict[str, tp.Any]) -> None:
        from fspnet.config import resolve

        resolved = resolve(config, source="trial config")
        for stage in ("decoder", "encoder"):
            arch = resolved[stage]["architecture"]
            if arch:
                try:
                    import fspnet.nets as nets
                except ImportError:  # the network builder is not installed: the trainer will say
                    continue
                make = getattr(nets, f"{stage}_config", None)
                if make is not None:
                    try:
                        make(**arch)
                    except (TypeError, ValueError) as e:
                        raise ValueError(f"{stage}.architecture: {e}") from None

    def metric_weights(self, config: dict[str, tp.Any], metric: str) -> list[str]:
        """The encoder's ``loss`` is ``recon_weight`` × reconstruction + ``latent_weight`` × the
        parameter loss, so both weights scale ``val_loss``/``train_loss`` (not the parts)."""
        if config.get("stage") == "encoder" and metric in ("val_loss", "train_loss", "best_val_loss", "final_val_loss"):
            return ["encoder.recon_weight", "encoder.latent_weight"]
        return []

    def has_path(self, config: dict[str, tp.Any], path: str) -> bool:
        # Architecture knobs are keyword arguments of fspnet.nets.*_config, checked by check_config.
        return path.startswith(_ARCH_SECTIONS) or super().has_path(config, path)

    def prepare(self, config: dict[str, tp.Any], *, run_dir: Path, seed: int, resume: bool) -> dict[str, tp.Any]:
        config = copy.deepcopy(config)
        config["run_dir"] = str(run_dir)
        config["resume"] = bool(resume)
        config["training"]["seed"] = int(seed)
        config["training"]["progress"] = False  # hpo shows one bar for the whole study
        return config

    def quick_scan(self, config: dict[str, tp.Any], n_samples: int) -> dict[str, tp.Any]:
        config = copy.deepcopy(config)
        config["data"]["subset"] = {"n": int(n_samples), "mode": "first", "seed": 0}
        return config

    def train(
        self, config: dict[str, tp.Any], callback: Callback | None = None, interrupt: threading.Event | None = None
    ) -> dict[str, tp.Any]:
        from fspnet.train import train

        return train(config, callback, interrupt=interrupt)
