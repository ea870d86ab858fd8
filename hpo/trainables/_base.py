"""The trainable ABC: how :mod:`hpo` talks to a training function."""

from __future__ import annotations

import abc
import copy
import inspect
import threading
import typing as tp
from pathlib import Path

from hpo.errors import TrainableError
from runtools.io import read_mapping

__all__ = ["Callback", "FunctionTrainable", "Trainable", "read_config_file"]

#: Called after every epoch with ``(epoch, metrics)``; may return ``{"stop", "checkpoint"}``.
Callback = tp.Callable[[int, dict[str, float]], tp.Iterable[str] | None]


class Trainable(abc.ABC):
    """Adapter between :mod:`hpo` and one training function.

    A trainable turns a plain config dict into a trained model: ``train(config, callback,
    interrupt)`` calls ``callback(epoch, metrics)`` after every epoch, stops when the callback
    returns a collection holding ``"stop"``, checkpoints when it holds ``"checkpoint"``, stops
    within one batch with a mid-epoch checkpoint when ``interrupt`` is set, writes its
    artifacts into ``config``'s run directory and returns ``{"metrics": {...}, "epochs": n,
    ...}``. The other methods say where the run directory, seed and resume flag live in the
    config, so :mod:`hpo` never needs to know the config's layout.
    """

    #: Registry name, e.g. ``"mlp"``.
    name: str = ""

    def load_config(self, config: dict[str, tp.Any] | None, config_file: Path | None) -> dict[str, tp.Any]:
        """Return the resolved base config: ``config_file`` (YAML/JSON) updated with ``config``.

        Raises:
            ValueError: naming the key that is wrong (subclasses raise their own errors).
        """
        base = read_config_file(config_file) if config_file is not None else {}
        return _deep_update(base, config or {})

    def check_config(self, config: dict[str, tp.Any]) -> None:  # noqa: B027  (optional hook)
        """Raise ``ValueError`` naming the key if ``config`` is not a valid config."""

    def metric_weights(self, config: dict[str, tp.Any], metric: str) -> list[str]:
        """Config paths that scale ``metric`` (loss weights summed into it): a study that tunes
        one of them and optimises ``metric`` compares trials on different scales."""
        return []

    def has_path(self, config: dict[str, tp.Any], path: str) -> bool:
        """Whether a ``tune_params`` path names a key of ``config``."""
        from hpo.space import has_path

        return has_path(config, path)

    def prepare(self, config: dict[str, tp.Any], *, run_dir: Path, seed: int, resume: bool) -> dict[str, tp.Any]:
        """Return ``config`` with its run directory, seed and resume flag set."""
        config = copy.deepcopy(config)
        config.update(run_dir=str(run_dir), seed=int(seed), resume=bool(resume))
        return config

    def quick_scan(self, config: dict[str, tp.Any], n_samples: int) -> dict[str, tp.Any]:
        """Return ``config`` limited to ``n_samples`` training samples (for debugging a study)."""
        config = copy.deepcopy(config)
        config["quick_scan"] = int(n_samples)
        return config

    @abc.abstractmethod
    def train(
        self, config: dict[str, tp.Any], callback: Callback | None = None, interrupt: threading.Event | None = None
    ) -> dict[str, tp.Any]:
        """Train with ``config``; see the class docstring for the contract.

        Args:
            config: the prepared config (see :meth:`prepare`).
            callback: called after every epoch with ``(epoch, metrics)``.
            interrupt: when set (a preemption signal), training ends within one batch: the
                trainable writes a checkpoint holding its position inside the epoch and
                returns with ``stopped == "interrupted"``; ``resume`` then continues from that
                batch with the same per-epoch metrics as an uninterrupted run.
        """


class FunctionTrainable(Trainable):
    """Wrap a plain ``train(config, callback) -> dict`` function (``"module:function"``).

    A function that takes an ``interrupt`` keyword gets the worker's interrupt event.

    The run directory, seed and resume flag go to the top-level ``run_dir``, ``seed`` and
    ``resume`` keys, and ``quick_scan`` to ``quick_scan``. When the function has a
    ``defaults`` attribute (a dict), the base config starts from it and every ``tune_params``
    path must name one of its keys; otherwise a path may also add a key to an existing mapping.
    """

    def __init__(self, func: tp.Callable[..., dict[str, tp.Any]], name: str) -> None:
        self.func = func
        self.name = name
        defaults = getattr(func, "defaults", None)
        self.defaults: dict[str, tp.Any] | None = copy.deepcopy(defaults) if isinstance(defaults, dict) else None

    def load_config(self, config: dict[str, tp.Any] | None, config_file: Path | None) -> dict[str, tp.Any]:
        cfg = super().load_config(config, config_file)
        if self.defaults is None:
            return cfg
        unknown = sorted(set(cfg) - set(self.defaults))
        if unknown:
            raise TrainableError(f"{unknown[0]}: unknown key of {self.name}; valid keys are {', '.join(self.defaults)}")
        return _deep_update(self.defaults, cfg)

    def has_path(self, config: dict[str, tp.Any], path: str) -> bool:
        from hpo.space import get_path, has_path

        if has_path(config, path) or self.defaults is not None:
            return has_path(config, path)
        parent = path.rpartition(".")[0]
        return not parent or isinstance(get_path(config, parent, None), dict)

    def train(
        self, config: dict[str, tp.Any], callback: Callback | None = None, interrupt: threading.Event | None = None
    ) -> dict[str, tp.Any]:
        if interrupt is not None and self._takes_interrupt():
            return self.func(config, callback, interrupt=interrupt)
        return self.func(config, callback)

    def _takes_interrupt(self) -> bool:
        """Whether the function accepts ``interrupt=`` (functions written before it do not)."""
        try:
            params = inspect.signature(self.func).parameters
        except (TypeError, ValueError):
            return False
        return "interrupt" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def read_config_file(path: str | Path) -> dict[str, tp.Any]:
    """Read a YAML or JSON config file into a dict.

    Raises:
        TrainableError: when the file is missing, unreadable or not a mapping.
    """
    return read_mapping(path, TrainableError)


def _deep_update(base: dict[str, tp.Any], update: dict[str, tp.Any]) -> dict[str, tp.Any]:
    """Return ``base`` updated recursively with ``update``; dotted keys in ``update`` are paths."""
    from hpo.space import set_path

    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(key, str) and "." in key:
            set_path(out, key, copy.deepcopy(value), create=True)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
