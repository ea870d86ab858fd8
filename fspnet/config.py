"""The trainer config: dataclasses with defaults, validated once, plus dotted-path helpers.

``configs/fspnet.yaml`` mirrors :class:`Config`. :func:`load_config` reads the YAML, applies
dotted-path overrides (``{"training.learning_rate": 1e-3}``) and validates the result with
:func:`from_dict`, which reports *every* problem with its file and key path and raises one
:class:`~fspnet.errors.ConfigError`. The trainer and :mod:`hpo` pass the resolved plain dict
around; :func:`set_path` / :func:`get_path` address it by dotted paths.

Example:
    >>> from fspnet.config import from_dict
    >>> cfg = from_dict({"stage": "decoder", "training": {"batch_size": 120}})
    >>> cfg.training.batch_size, cfg.training.learning_rate
    (120, 0.0005)
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing as tp

import yaml

from fspnet._io import read_mapping
from fspnet.errors import ConfigError

__all__ = [
    "Config",
    "DataConfig",
    "DecoderConfig",
    "EncoderConfig",
    "GenerateConfig",
    "StageConfig",
    "SubsetConfig",
    "TrainingConfig",
    "from_dict",
    "get_path",
    "load_config",
    "parse_overrides",
    "resolve",
    "set_path",
    "to_dict",
]

STAGES = ("decoder", "encoder")


def _positive(v: tp.Any) -> str | None:
    return None if v > 0 else f"must be > 0, but got {v!r}"


def _non_negative(v: tp.Any) -> str | None:
    return None if v >= 0 else f"must be >= 0, but got {v!r}"


def _fraction(v: tp.Any) -> str | None:
    return None if 0 <= v < 1 else f"must be in [0, 1), but got {v!r}"


def _one_of(*choices: str) -> tp.Callable[[tp.Any], str | None]:
    def check(v: tp.Any) -> str | None:
        return None if v in choices else f"unknown {v!r}; choose one of {', '.join(choices)}"

    return check


def _device(v: str) -> str | None:
    if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
        return None
    return f"unknown device {v!r}; choose auto, cpu, cuda or cuda:<index>"


def _field(default: tp.Any, check: tp.Callable[[tp.Any], str | None] | None = None, doc: str = "") -> tp.Any:
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"check": check, "doc": doc})
    return dataclasses.field(default=default, metadata={"check": check, "doc": doc})


@dataclasses.dataclass
class GenerateConfig:
    """How to synthesise ``data.path`` when the file does not exist yet.

    ``config`` is the generator's config (see ``fspnet.synthesize.SynthesizeConfig``); ``n``
    and ``seed`` are passed to :func:`fspnet.synthesize.synthesize` beside it.
    """

    n: int = _field(10_000, _positive, "number of spectra")
    seed: int = _field(0, None, "random seed of the generator")
    config: dict[str, tp.Any] = _field({}, None, "fspnet.synthesize config (model, response, sampling, ...)")


@dataclasses.dataclass
class SubsetConfig:
    """Train on K spectra of the file only (quick scans)."""

    n: int = _field(1000, _positive, "number of spectra kept")
    mode: str = _field("first", _one_of("first", "random"), "first K or K chosen at random")
    seed: int = _field(0, None, "seed of the random choice")


@dataclasses.dataclass
class DataConfig:
    """Where the spectra come from and how they are split."""

    path: str = _field("data/synthetic.h5", None, "HDF5 dataset (see fspnet.data)")
    generate: GenerateConfig | None = _field(None, None, "make data.path with fspnet.synthesize if missing")
    subset: SubsetConfig | None = _field(None, None, "use only part of the file")
    val_fraction: float = _field(0.1, _fraction, "fraction held out for validation")
    split_seed: int | None = _field(None, None, "seed of the split (default: training.seed)")
    log_params: list[int] | None = _field(None, None, "parameter indices trained in log10 (default: the file's)")


@dataclasses.dataclass
class DecoderConfig:
    """The decoder network: a JSON path, or architecture knobs for ``fspnet.nets.decoder_config``."""

    network: str | None = _field(None, None, "network JSON; null builds it from architecture")
    architecture: dict[str, tp.Any] = _field({}, None, "keyword arguments of fspnet.nets.decoder_config")


@dataclasses.dataclass
class EncoderConfig:
    """The encoder network and its loss through the frozen decoder."""

    network: str | None = _field(None, None, "network JSON; null builds it from architecture")
    architecture: dict[str, tp.Any] = _field({}, None, "keyword arguments of fspnet.nets.encoder_config")
    decoder_run: str = _field("runs/decoder", None, "run directory of the trained decoder")
    recon_weight: float = _field(1.0, _non_negative, "weight of MSE(decoder(encoder(x)), x)")
    latent_weight: float = _field(0.01, _non_negative, "weight of MSE(encoder(x), params)")


@dataclasses.dataclass
class StageConfig:
    """One extra stage of the schedule: the learning rate drops tenfold and training goes on."""

    epochs: int = _field(50, _positive, "most epochs in this stage")
    patience: int | None = _field(10, None, "early-stopping patience in this stage (null: none)")


@dataclasses.dataclass
class TrainingConfig:
    """Optimiser, schedule and stopping."""

    epochs: int = _field(150, _positive, "most epochs in the first stage")
    batch_size: int = _field(60, _positive, "spectra per batch")
    learning_rate: float = _field(5e-4, _positive, "AdamW learning rate")
    weight_decay: float = _field(0.0, _non_negative, "AdamW weight decay")
    lr_factor: float = _field(0.5, _fraction, "ReduceLROnPlateau factor")
    lr_patience: int = _field(10, _non_negative, "ReduceLROnPlateau patience (epochs)")
    min_lr: float = _field(0.0, _non_negative, "ReduceLROnPlateau floor")
    patience: int | None = _field(30, None, "early-stopping patience in the first stage (null: none)")
    stages: list[StageConfig] = _field([], None, "extra stages, each at a tenth of the previous lr")
    grad_clip: float | None = _field(None, None, "clip the gradient norm to this value (null: off)")
    seed: int = _field(0, None, "seed of weights, shuffling and dropout")
    device: str = _field("auto", _device, "auto (CUDA if present, else CPU), cpu, cuda, cuda:N")
    checkpoint_every: int = _field(1, _non_negative, "write the last checkpoint every N epochs (0: at the end)")
    progress: bool = _field(True, None, "show a tqdm bar per epoch")
    plots: bool = _field(True, None, "write loss_curve.png and reconstruction.png")


@dataclasses.dataclass
class Config:
    """The whole trainer config (``configs/fspnet.yaml``)."""

    stage: str = _field("decoder", _one_of(*STAGES), "which network to train")
    run_dir: str | None = _field(None, None, "output folder (default runs/<stage>)")
    resume: bool = _field(False, None, "continue from run_dir's last checkpoint")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)
    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)


_T = tp.TypeVar("_T")


def from_dict(data: tp.Mapping[str, tp.Any], *, source: str = "config", cls: type[_T] = Config) -> _T:  # type: ignore[assignment]
    """Validate a plain mapping and return the dataclass ``cls`` (default :class:`Config`).

    Missing keys take their defaults. Every problem (unknown key, wrong type, bad value) is
    collected with its key path, and one error lists them all.

    Args:
        data: the mapping, e.g. parsed YAML.
        source: what the mapping came from (a file name), put in front of each message.
        cls: the dataclass to build.

    Raises:
        ConfigError: ``"<source>: <key.path>: <problem>"`` lines, one per problem.
    """
    errors: list[str] = []
    value = _convert(data, cls, "", errors)
    if isinstance(value, Config):
        for name in STAGES:
            net = getattr(value, name)
            if net.network is not None and net.architecture:
                errors.append(
                    f"{name}: give either network (a JSON file) or architecture (knobs for "
                    f"fspnet.nets.{name}_config), not both"
                )
    if errors:
        lines = "\n".join(f"  {source}: {e}" for e in errors)
        raise ConfigError(f"{source}: {len(errors)} error(s) in the config:\n{lines}")
    return value


def build(data: tp.Any, cls: type[_T], errors: list[str]) -> _T:
    """Build the dataclass ``cls`` from ``data`` without raising: each problem is appended to
    ``errors`` as ``"<key.path>: <problem>"`` so callers can add their own checks and raise once."""
    return _convert(data, cls, "", errors)


def to_dict(config: tp.Any) -> dict[str, tp.Any]:
    """Return a dataclass config as a plain (JSON/YAML-ready) dict."""
    return dataclasses.asdict(config)


def resolve(config: tp.Mapping[str, tp.Any], *, source: str = "config") -> dict[str, tp.Any]:
    """Validate ``config`` and return it as a plain dict with every default filled in."""
    return to_dict(from_dict(config, source=source))


def load_config(path: str | os.PathLike[str] | None, overrides: tp.Mapping[str, tp.Any] | None = None) -> dict[str, tp.Any]:
    """Read a YAML config, apply dotted-path overrides, validate and return the resolved dict.

    Args:
        path: YAML file; ``None`` starts from the defaults.
        overrides: ``{"training.learning_rate": 1e-3, ...}`` applied before validation, so a
            misspelt override is reported like a misspelt key in the file.

    Returns:
        The plain dict of :class:`Config` with every default filled in.

    Raises:
        ConfigError: naming the file and every bad key path.
    """
    raw: tp.Any = {}
    source = "config"
    if path is not None:
        source = str(path)
        raw = read_mapping(path, ConfigError)
    raw = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        try:
            set_path(raw, key, value)
        except (KeyError, TypeError, IndexError) as e:
            raise ConfigError(f"{source}: override {key}: {e.args[0] if e.args else e}") from None
    return resolve(raw, source=source)


def parse_overrides(items: tp.Iterable[str]) -> dict[str, tp.Any]:
    """Parse ``key=value`` strings (values as YAML scalars: ``1e-3``, ``true``, ``[1, 2]``).

    Raises:
        ConfigError: for an item without ``=``.
    """
    out: dict[str, tp.Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. training.learning_rate=1e-3")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        out[key.strip()] = _float_string(value)
    return out


def set_path(config: tp.MutableMapping[str, tp.Any], path: str, value: tp.Any) -> None:
    """Set ``config[a][b][c] = value`` for ``path="a.b.c"``, creating missing mappings.

    Integer parts index lists (``"training.stages.0.epochs"``).

    Raises:
        TypeError: when a part of the path is neither a mapping nor a list.
        IndexError: when a list index is out of range.
    """
    parts = path.split(".")
    node: tp.Any = config
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_index(part, where, len(node))]
        elif isinstance(node, tp.MutableMapping):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise TypeError(f"{'.'.join(parts[:i]) or '<root>'} is a {type(node).__name__}, not a mapping")
        if not isinstance(node, (tp.MutableMapping, list)):
            raise TypeError(f"{where} is a {type(node).__name__}, not a mapping")
    if isinstance(node, list):
        node[_index(parts[-1], path, len(node))] = value
    else:
        node[parts[-1]] = value


_MISSING = object()


def get_path(config: tp.Mapping[str, tp.Any], path: str, default: tp.Any = _MISSING) -> tp.Any:
    """Return ``config[a][b][c]`` for ``path="a.b.c"``.

    Raises:
        KeyError: naming the first missing part, unless ``default`` is given.
    """
    node: tp.Any = config
    parts = path.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        try:
            if isinstance(node, list):
                node = node[_index(part, where, len(node))]
            elif isinstance(node, tp.Mapping):
                node = node[part]
            else:
                raise KeyError(where)
        except (KeyError, IndexError):
            if default is not _MISSING:
                return default
            raise KeyError(f"{where}: no such key") from None
    return node


def _index(part: str, where: str, n: int) -> int:
    try:
        i = int(part)
    except ValueError:
        raise TypeError(f"{where}: {part!r} indexes a list; use an integer") from None
    if not -n <= i < n:
        raise IndexError(f"{where}: index {i} out of range for a list of {n}")
    return i


def _float_string(v: tp.Any) -> tp.Any:
    # YAML 1.1 reads "1e-3" (no dot) as a string; users mean a number.
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
        unknown = [k for k in value if k not in fields]
        for k in unknown:
            valid = ", ".join(fields)
            errors.append(f"{_join(path, str(k))}: unknown key; valid keys are {valid}")
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
        except TypeError as e:  # pragma: no cover - fields match by construction
            errors.append(f"{where}: {e}")
            return t()  # type: ignore[operator]

    origin = tp.get_origin(t)
    args = tp.get_args(t)
    if origin in (tp.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(value, options[0], path, errors)
        for a in options:  # pragma: no cover - no multi-type unions in the schema
            trial: list[str] = []
            v = _convert(value, a, path, trial)
            if not trial:
                return v
        errors.append(f"{where}: expected {_type_name(t)}, but got {value!r}")
        return None
    if origin is list:
        if not isinstance(value, (list, tuple)):
            errors.append(f"{where}: expected a list, but got {type(value).__name__} {value!r}")
            return []
        return [_convert(v, args[0], f"{where}.{i}", errors) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, tp.Mapping):
            errors.append(f"{where}: expected a mapping, but got {type(value).__name__} {value!r}")
            return {}
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            errors.append(f"{where}: keys must be strings, but got {bad!r}")
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):
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
        value = _float_string(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
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
