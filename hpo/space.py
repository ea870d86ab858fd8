"""The search space: ``tune_params`` from a study file → ``trial.suggest_*`` → trainable config.

A study file lists the hyperparameters in the ``tune_params`` form::

    tune_params:
      lr:     {state: true, suggest: float, kwargs: {low: 1.0e-4, high: 1.0e-2, log: true},
               path: optimizer.lr}
      layers: {state: true, suggest: int, kwargs: {low: 1, high: 4}, path: model.layers}
      act:    {state: false, suggest: cat, kwargs: {choices: [relu, elu]}, path: model.activation}

``path`` is a dotted key into the trainable's config (integer segments index lists; it
defaults to the parameter's name), addressed with :mod:`runtools.schema`'s ``get_path`` /
``set_path`` / ``has_path`` (re-exported here). Parameters with ``state: false`` are not tuned and keep the
value the config already has.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing as tp

import optuna

from runtools.schema import build, field, field_docs, get_path, has_path, set_path  # dotted paths: the one implementation

__all__ = [
    "SUGGEST_KINDS",
    "TuneParam",
    "apply_params",
    "get_path",
    "has_path",
    "parse_tune_params",
    "set_path",
    "suggest",
]

#: ``suggest`` kinds and the ``kwargs`` each accepts (``required``, ``optional``).
SUGGEST_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "int": (("low", "high"), ("step", "log")),
    "float": (("low", "high"), ("step", "log")),
    "cat": (("choices",), ()),
}
_ALIASES = {"categorical": "cat", "integer": "int", "uniform": "float"}


def _true_or_false(v: tp.Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, but got {v!r}"


@dataclasses.dataclass
class _ParamSpec:
    """One entry of ``tune_params`` as written in a study file (``kwargs`` depend on ``suggest``)."""

    state: tp.Any = field(True, _true_or_false, "tune it (false: keep the config's value)")
    suggest: tp.Any = field(None, None, "int, float or cat")
    kwargs: tp.Any = field({}, None, "arguments of trial.suggest_int / suggest_float / suggest_categorical")
    path: tp.Any = field(None, None, "dotted key into the trainable's config (default: the parameter's name)")


_PARAM_KEYS = tuple(field_docs(_ParamSpec))


@dataclasses.dataclass(frozen=True)
class TuneParam:
    """One hyperparameter of the search space.

    Args:
        name: the Optuna parameter name.
        suggest: ``"int"``, ``"float"`` or ``"cat"``.
        kwargs: arguments of ``trial.suggest_int`` / ``suggest_float`` / ``suggest_categorical``.
        paths: the dotted key into the trainable config that receives the value (one).
        state: whether the parameter is tuned; ``False`` keeps the config's value.
    """

    name: str
    suggest: str
    kwargs: dict[str, tp.Any]
    paths: tuple[str, ...]
    state: bool = True

    @property
    def path(self) -> str:
        """The dotted config key of this parameter."""
        return self.paths[0]

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution this parameter samples from."""
        kw = self.kwargs
        if self.suggest == "cat":
            return optuna.distributions.CategoricalDistribution(list(kw["choices"]))
        if self.suggest == "int":
            return optuna.distributions.IntDistribution(
                int(kw["low"]), int(kw["high"]), log=bool(kw.get("log", False)), step=int(kw.get("step", 1))
            )
        return optuna.distributions.FloatDistribution(
            float(kw["low"]), float(kw["high"]), log=bool(kw.get("log", False)), step=kw.get("step")
        )

    def extremes(self) -> list[tp.Any]:
        """Values at the edges of the space (every choice for ``cat``), used to dry-check configs."""
        if self.suggest == "cat":
            return list(self.kwargs["choices"])
        return [self.kwargs["low"], self.kwargs["high"]]


def parse_tune_params(raw: tp.Any, key: str = "tune_params") -> tuple[list[TuneParam], list[tuple[str, str]]]:
    """Check the ``tune_params`` mapping and build :class:`TuneParam` objects.

    Nothing is raised: every problem is returned as ``(key_path, message)`` so the caller can
    report all of them at once.

    Args:
        raw: the ``tune_params`` value from the study file.
        key: the key path of ``raw`` inside the study file.

    Returns:
        The valid parameters (tuned or not) and the list of problems.
    """
    errors: list[tuple[str, str]] = []
    params: list[TuneParam] = []
    if raw is None:
        return params, errors
    if not isinstance(raw, dict):
        return params, [(key, f"must be a mapping of parameter name to spec, but got {type(raw).__name__}")]
    for name, spec in raw.items():
        where = f"{key}.{name}"
        n_before = len(errors)
        if not isinstance(spec, dict):
            errors.append((where, f"must be a mapping with keys {', '.join(_PARAM_KEYS)}, but got {type(spec).__name__}"))
            continue
        problems: list[str] = []
        state = build(spec, _ParamSpec, problems).state
        for problem in problems:  # "<key>: <message>", the key relative to this parameter
            key, _, message = problem.partition(": ")
            errors.append((f"{where}.{key}", message))
        kind = spec.get("suggest")
        kind = _ALIASES.get(kind, kind) if isinstance(kind, str) else kind
        if kind not in SUGGEST_KINDS:
            errors.append((f"{where}.suggest", f"unknown {kind!r}; choose one of {', '.join(SUGGEST_KINDS)}"))
        path = spec.get("path", name)
        paths = [path] if isinstance(path, str) and path.strip(".") else []
        if not paths:
            errors.append((f"{where}.path", f"must be a dotted config key such as training.learning_rate, but got {path!r}"))
        kwargs = spec.get("kwargs", {})
        if not isinstance(kwargs, dict):
            errors.append((f"{where}.kwargs", f"must be a mapping, but got {type(kwargs).__name__}"))
        elif kind in SUGGEST_KINDS:
            errors += _check_kwargs(kind, kwargs, f"{where}.kwargs")
        if len(errors) == n_before:
            params.append(TuneParam(str(name), str(kind), dict(kwargs), tuple(paths), state))
    return params, errors


def _check_kwargs(kind: str, kwargs: dict[str, tp.Any], where: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    required, optional = SUGGEST_KINDS[kind]
    for missing in required:
        if missing not in kwargs:
            errors.append((f"{where}.{missing}", f"required for suggest: {kind}"))
    for unknown in sorted(set(kwargs) - set(required) - set(optional)):
        errors.append((f"{where}.{unknown}", f"unknown key for suggest: {kind}; valid keys are {', '.join(required + optional)}"))
    if errors:
        return errors
    if kind == "cat":
        choices = kwargs["choices"]
        if not isinstance(choices, list) or not choices:
            return [(f"{where}.choices", f"must be a non-empty list, but got {choices!r}")]
        for i, c in enumerate(choices):
            if not (c is None or isinstance(c, (bool, int, float, str))):
                errors.append((f"{where}.choices.{i}", f"must be null, bool, number or string, but got {type(c).__name__}"))
        return errors
    number = int if kind == "int" else (int, float)
    for k in ("low", "high", "step"):
        v = kwargs.get(k)
        if k in kwargs and (isinstance(v, bool) or not isinstance(v, number) or (isinstance(v, float) and not math.isfinite(v))):
            errors.append((f"{where}.{k}", f"must be {'an integer' if kind == 'int' else 'a finite number'}, but got {v!r}"))
    if "log" in kwargs and not isinstance(kwargs["log"], bool):
        errors.append((f"{where}.log", f"must be true or false, but got {kwargs['log']!r}"))
    if errors:
        return errors
    low, high = kwargs["low"], kwargs["high"]
    if low > high:
        errors.append((f"{where}.low", f"low must be <= high, but got low={low} > high={high}"))
    if kwargs.get("log") and low <= 0:
        errors.append((f"{where}.low", f"low must be > 0 when log is true, but got {low}"))
    if "step" in kwargs:
        if kwargs["step"] <= 0:
            errors.append((f"{where}.step", f"step must be > 0, but got {kwargs['step']}"))
        elif kwargs.get("log"):
            errors.append((f"{where}.step", "step cannot be combined with log: true"))
    return errors


def suggest(trial: optuna.trial.BaseTrial, param: TuneParam) -> tp.Any:
    """Ask ``trial`` for a value of ``param`` through the matching ``suggest_*`` call."""
    kw = param.kwargs
    if param.suggest == "cat":
        return trial.suggest_categorical(param.name, list(kw["choices"]))
    if param.suggest == "int":
        return trial.suggest_int(
            param.name, int(kw["low"]), int(kw["high"]), step=int(kw.get("step", 1)), log=bool(kw.get("log", False))
        )
    return trial.suggest_float(
        param.name, float(kw["low"]), float(kw["high"]), step=kw.get("step"), log=bool(kw.get("log", False))
    )


def apply_params(config: dict[str, tp.Any], params: list[TuneParam], values: dict[str, tp.Any]) -> dict[str, tp.Any]:
    """Return a deep copy of ``config`` with ``values[name]`` set at every path of each param.

    Parameters missing from ``values`` (for example with ``state: false``) are left untouched.
    """
    config = copy.deepcopy(config)
    for p in params:
        if p.name in values:
            for path in p.paths:
                set_path(config, path, values[p.name], create=True)
    return config
