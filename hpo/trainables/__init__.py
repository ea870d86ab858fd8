"""Trainables: the training functions :mod:`hpo` can tune.

A study's ``trainable:`` is a registered name (``"fspnet"``, ``"mlp"``, or one added through
the ``hpo.trainables`` entry-point group) or ``"module:function"`` naming a plain
``train(config, callback) -> dict`` function (given ``interrupt=`` too when it takes that
keyword: a :class:`threading.Event` set on preemption, see :meth:`Trainable.train`).

Example:
    >>> from hpo.trainables import get_trainable
    >>> get_trainable("mlp").name
    'mlp'
"""

from __future__ import annotations

import importlib
import typing as tp

from hpo._plugins import load_entry_points
from hpo.errors import TrainableError
from hpo.trainables._base import Callback, FunctionTrainable, Trainable, read_config_file

__all__ = [
    "TRAINABLES",
    "Callback",
    "FspnetTrainable",
    "FunctionTrainable",
    "MLPTrainable",
    "Trainable",
    "default_mlp_config",
    "get_trainable",
    "read_config_file",
    "train_mlp",
]

#: Registered trainables by name, as ``"module:Class"`` imported on first use (torch loads lazily).
TRAINABLES: dict[str, str] = {"fspnet": "hpo.trainables._fspnet:FspnetTrainable", "mlp": "hpo.trainables._mlp:MLPTrainable"}
_LAZY = {
    "FspnetTrainable": "hpo.trainables._fspnet",
    "MLPTrainable": "hpo.trainables._mlp",
    "default_mlp_config": "hpo.trainables._mlp",
    "train_mlp": "hpo.trainables._mlp",
}


def __getattr__(name: str) -> tp.Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpo.trainables' has no attribute {name!r}")


def _load(target: tp.Any) -> tp.Any:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    return target


def get_trainable(spec: str | Trainable | tp.Callable[..., dict[str, tp.Any]]) -> Trainable:
    """Resolve a trainable from a registered name, ``"module:function"``, a function or an instance.

    Raises:
        TrainableError: for an unknown name (listing the registered ones) or an import failure.
    """
    if isinstance(spec, Trainable):
        return spec
    if callable(spec):
        return FunctionTrainable(spec, getattr(spec, "__name__", "function"))
    if not isinstance(spec, str) or not spec:
        raise TrainableError(f"trainable must be a name or 'module:function', but got {spec!r}")
    registry = {**load_entry_points("hpo.trainables"), **TRAINABLES}
    if spec in registry:
        return _load(registry[spec])()
    if ":" not in spec:
        raise TrainableError(f"unknown trainable {spec!r}; choose one of {', '.join(sorted(registry))} or give 'module:function'")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise TrainableError(f"trainable {spec!r}: cannot import {module_name!r} ({e})") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise TrainableError(f"trainable {spec!r}: module {module_name!r} has no attribute {attr!r}")
    if isinstance(obj, type) and issubclass(obj, Trainable):
        return obj()
    if isinstance(obj, Trainable):
        return obj
    if not callable(obj):
        raise TrainableError(f"trainable {spec!r}: {attr!r} is not callable")
    return FunctionTrainable(obj, spec)
