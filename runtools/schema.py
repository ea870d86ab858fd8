"""The one config-validation mechanism: dataclasses with defaults, checked once, plus dotted paths.

A config section is a :func:`dataclasses.dataclass` whose fields carry defaults (and, through
:func:`field`, a value check and a one-line doc). :func:`build` converts a plain mapping
(parsed YAML/JSON) into that dataclass without raising: every problem (unknown key, listing
the valid keys; wrong type; a value its check refuses; a non-finite number) is appended to a
list as ``"<key.path>: <problem>"``. :func:`from_dict` does the same and raises once, with the
error class of the calling package (``fspnet.errors.ConfigError``, ``hpo.errors.StudyConfigError``
...), so each package keeps its own errors and messages.

:func:`get_path`, :func:`set_path` and :func:`has_path` address nested dict/list configs by
dotted keys (``"training.stages.0.epochs"``); they are the only implementation in the toolkit.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Opt:
    ...     lr: float = field(1e-3, positive, "learning rate")
    >>> from_dict({"lr": 0.1}, Opt).lr
    0.1
    >>> from_dict({"lr": -1, "momentum": 0.9}, Opt, source="opt.yaml")
    Traceback (most recent call last):
    ...
    ValueError: opt.yaml: 2 error(s) in the config:
      opt.yaml: momentum: unknown key; valid keys are lr
      opt.yaml: lr: must be > 0, but got -1.0
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing as tp

__all__ = [
    "Check",
    "at_least",
    "build",
    "field",
    "field_docs",
    "finite",
    "float_string",
    "fraction",
    "from_dict",
    "get_path",
    "has_path",
    "interval",
    "non_negative",
    "one_of",
    "positive",
    "raise_errors",
    "set_path",
]

#: A value check: returns the problem (``"must be > 0, but got -1"``) or None when the value is good.
Check = tp.Callable[[tp.Any], "str | None"]
_T = tp.TypeVar("_T")


# ----------------------------------------------------------------------------- value checks


def finite(v: tp.Any) -> str | None:
    """Refuse NaN and ±inf."""
    return None if math.isfinite(v) else f"must be a finite number, but got {v!r}"


def positive(v: tp.Any) -> str | None:
    """A finite number > 0."""
    if not math.isfinite(v):
        return f"must be a finite number > 0, but got {v!r}"
    return None if v > 0 else f"must be > 0, but got {v!r}"


def non_negative(v: tp.Any) -> str | None:
    """A finite number >= 0."""
    if not math.isfinite(v):
        return f"must be a finite number >= 0, but got {v!r}"
    return None if v >= 0 else f"must be >= 0, but got {v!r}"


def fraction(v: tp.Any) -> str | None:
    """A number in [0, 1)."""
    return None if 0 <= v < 1 else f"must be in [0, 1), but got {v!r}"


def at_least(low: float) -> Check:
    """A check that accepts numbers >= ``low``."""

    def check(v: tp.Any) -> str | None:
        return None if v >= low else f"must be >= {low}, but got {v!r}"

    return check


def interval(low: float, high: float, *, closed: str = "left") -> Check:
    """A check that accepts numbers between ``low`` and ``high``.

    Args:
        low, high: the bounds.
        closed: which bounds belong to the interval: ``"left"`` ([low, high)), ``"right"``,
            ``"both"`` or ``"neither"``.
    """
    lo_in, hi_in = closed in ("left", "both"), closed in ("right", "both")
    text = f"{'[' if lo_in else '('}{low}, {high}{']' if hi_in else ')'}"

    def check(v: tp.Any) -> str | None:
        ok = (low <= v if lo_in else low < v) and (v <= high if hi_in else v < high)
        return None if ok else f"must be in {text}, but got {v!r}"

    return check


def one_of(*choices: str) -> Check:
    """A check that accepts only ``choices``."""

    def check(v: tp.Any) -> str | None:
        return None if v in choices else f"unknown {v!r}; choose one of {', '.join(choices)}"

    return check


def field(default: tp.Any, check: Check | None = None, doc: str = "") -> tp.Any:
    """A dataclass field with a default, an optional value check and a one-line doc.

    Mutable defaults (lists, dicts) are deep-copied per instance.
    """
    meta = {"check": check, "doc": doc}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_docs(cls: type) -> dict[str, str]:
    """``{field name: doc}`` of the dataclass ``cls`` in declaration order (the valid keys)."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


# ----------------------------------------------------------------------------- building


def build(data: tp.Any, cls: type[_T], errors: list[str], path: str = "") -> _T:
    """Build the dataclass ``cls`` from ``data`` without raising.

    Missing keys take their defaults; each problem is appended to ``errors`` as
    ``"<key.path>: <problem>"`` (``path`` is prefixed), and a bad value keeps its default so
    that later checks still see good types. Callers add their own cross-field checks to the
    same list and raise once (:func:`raise_errors`).
    """
    return tp.cast(_T, _convert(data, cls, path, errors))


def from_dict(
    data: tp.Any,
    cls: type[_T],
    *,
    source: str = "config",
    error: type[Exception] = ValueError,
    check: tp.Callable[[_T, list[str]], None] | None = None,
) -> _T:
    """Validate ``data`` as the dataclass ``cls``; raise ``error`` once listing every problem.

    Args:
        data: the mapping, e.g. parsed YAML.
        cls: the dataclass to build.
        source: what the mapping came from (a file name), put in front of each message.
        error: the exception class to raise (the calling package's config error).
        check: cross-field checks run on the built value; they append to the error list.

    Raises:
        error: ``"<source>: N error(s) in the config:"`` then one ``"<source>: <key.path>: <problem>"``
            line per problem.
    """
    errors: list[str] = []
    value = build(data, cls, errors)
    if check is not None:
        check(value, errors)
    raise_errors(errors, source=source, error=error)
    return value


def raise_errors(errors: tp.Sequence[str], *, source: str = "config", error: type[Exception] = ValueError) -> None:
    """Raise ``error`` listing ``errors`` (``"<key.path>: <problem>"``), if there are any."""
    if errors:
        lines = "\n".join(f"  {source}: {e}" for e in errors)
        raise error(f"{source}: {len(errors)} error(s) in the config:\n{lines}")


def float_string(v: tp.Any) -> tp.Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; users mean a number: convert such strings."""
    if isinstance(v, str):
        try:
            return float(v) if any(c in v for c in "eE.") or v.lower() in ("inf", "-inf", "nan") else v
        except ValueError:
            return v
    return v


def _type_name(t: tp.Any) -> str:
    if dataclasses.is_dataclass(t):
        return "mapping"
    origin = tp.get_origin(t)
    if origin in (tp.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in tp.get_args(t))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if t is type(None):
        return "null"
    return getattr(t, "__name__", str(t))


def _convert(value: tp.Any, t: tp.Any, path: str, errors: list[str]) -> tp.Any:
    """Check ``value`` against the annotation ``t``; append problems to ``errors``."""
    where = path or "<root>"
    if dataclasses.is_dataclass(t):
        if value is None:
            value = {}
        if not isinstance(value, tp.Mapping):
            errors.append(f"{where}: expected a mapping, but got {type(value).__name__} {value!r}")
            return t()  # type: ignore[operator]
        hints = tp.get_type_hints(t)
        fields = {f.name: f for f in dataclasses.fields(t)}
        for k in value:
            if k not in fields:
                errors.append(f"{_join(path, str(k))}: unknown key; valid keys are {', '.join(fields)}")
        kwargs = {}
        for name, f in fields.items():
            if name not in value:
                continue
            sub = _join(path, name)
            before = len(errors)
            v = _convert(value[name], hints[name], sub, errors)
            if len(errors) > before and not dataclasses.is_dataclass(v):
                continue  # a bad value keeps its default, so later checks still see good types
            check = f.metadata.get("check")
            if check is not None and v is not None and (problem := check(v)):
                errors.append(f"{sub}: {problem}")
            kwargs[name] = v
        try:
            return t(**kwargs)  # type: ignore[operator]
        except TypeError as e:  # a field without a default is missing
            errors.append(f"{where}: {e}")
            return None

    origin = tp.get_origin(t)
    args = tp.get_args(t)
    if origin is tp.Literal:
        if value in args:
            return value
        errors.append(f"{where}: unknown {value!r}; choose one of {', '.join(map(str, args))}")
        return value
    if origin in (tp.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(value, options[0], path, errors)
        for a in options:
            trial: list[str] = []
            v = _convert(value, a, path, trial)
            if not trial:
                return v
        errors.append(f"{where}: expected {_type_name(t)}, but got {type(value).__name__} {value!r}")
        return None
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            errors.append(f"{where}: expected a list, but got {type(value).__name__} {value!r}")
            return []
        item = args[0] if args else tp.Any
        return [_convert(v, item, f"{where}.{i}", errors) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, tp.Mapping):
            errors.append(f"{where}: expected a mapping, but got {type(value).__name__} {value!r}")
            return {}
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            errors.append(f"{where}: keys must be strings, but got {bad!r}")
        if len(args) == 2 and args[1] is not tp.Any:
            return {k: _convert(v, args[1], _join(path, str(k)), errors) for k, v in value.items()}
        return copy.deepcopy(dict(value))
    if t is tp.Any:
        return value
    if t is bool:
        if isinstance(value, bool):
            return value
    elif t is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif t is float:
        value = float_string(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # no setting means anything at inf or NaN
                errors.append(f"{where}: must be a finite number, but got {value!r}")
            return float(value)
    elif t is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
    errors.append(f"{where}: expected {_type_name(t)}, but got {type(value).__name__} {value!r}")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ----------------------------------------------------------------------------- dotted paths

_MISSING: tp.Any = object()


def _split(path: str) -> list[str]:
    return [s for s in path.split(".") if s]


def _index(part: str, where: str, n: int) -> int:
    try:
        i = int(part)
    except ValueError:
        raise TypeError(f"{where}: {part!r} indexes a list; use an integer") from None
    if not -n <= i < n:
        raise IndexError(f"{where}: index {i} out of range for a list of {n}")
    return i


def get_path(config: tp.Any, path: str, default: tp.Any = _MISSING) -> tp.Any:
    """Return ``config[a][b][c]`` for ``path="a.b.c"`` (integer parts index lists).

    Raises:
        KeyError: ``"<a.b>: no such key"`` naming the first part that is missing (or cannot be
            descended into), unless ``default`` is given.
    """
    node = config
    parts = _split(path)
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        try:
            if isinstance(node, list):
                node = node[_index(part, where, len(node))]
            elif isinstance(node, tp.Mapping):
                node = node[part]
            else:
                raise KeyError(where)
        except (KeyError, IndexError, TypeError):
            if default is not _MISSING:
                return default
            raise KeyError(f"{where}: no such key") from None
    return node


def has_path(config: tp.Any, path: str) -> bool:
    """Whether the dotted ``path`` exists in ``config``."""
    return get_path(config, path, _ABSENT) is not _ABSENT


_ABSENT: tp.Any = object()


def set_path(config: tp.Any, path: str, value: tp.Any, create: bool = True) -> None:
    """Set ``config[a][b][c] = value`` for ``path="a.b.c"`` in place.

    Args:
        config: a nested dict/list.
        path: e.g. ``"optimizer.lr"`` or ``"training.stages.0.epochs"`` (integer parts index lists).
        value: the new value.
        create: create missing (or null) mappings on the way; otherwise a missing part raises.

    Raises:
        KeyError: ``"<a.b>: no such key"`` when a parent is missing and ``create`` is false.
        TypeError: when a part of the path is neither a mapping nor a list.
        IndexError: when a list index is out of range.
    """
    parts = _split(path)
    if not parts:
        raise KeyError(f"{path!r}: empty key path")
    node: tp.Any = config
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_index(part, where, len(node))]
        elif isinstance(node, tp.MutableMapping):
            if node.get(part) is None:
                if not create:
                    raise KeyError(f"{where}: no such key")
                node[part] = {}
            node = node[part]
        else:
            raise TypeError(f"{'.'.join(parts[:i]) or '<root>'} is a {type(node).__name__}, not a mapping")
        if not isinstance(node, (tp.MutableMapping, list)):
            raise TypeError(f"{where} is a {type(node).__name__}, not a mapping")
    if isinstance(node, list):
        node[_index(parts[-1], path, len(node))] = value
    elif isinstance(node, tp.MutableMapping):
        node[parts[-1]] = value
    else:
        raise TypeError(f"<root> is a {type(node).__name__}, not a mapping")
