"""The trainer config: dataclasses with defaults, validated once, plus dotted-path helpers.

``configs/fspnet.yaml`` mirrors :class:`Config`. :func:`load_config` reads the YAML, applies
dotted-path overrides (``{"training.learning_rate": 1e-3}``) and validates the result with
:func:`from_dict`, which reports *every* problem with its file and key path and raises one
:class:`~fspnet.errors.ConfigError`. The trainer and :mod:`hpo` pass the resolved plain dict
around; :func:`set_path` / :func:`get_path` address it by dotted paths. The mechanism (dataclass
conversion, value checks, dotted paths) is :mod:`runtools.schema`, shared with :mod:`hpo`.

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
import typing as tp

import yaml

from fspnet.errors import ConfigError
from runtools import schema
from runtools.io import read_mapping
from runtools.schema import field as _field
from runtools.schema import fraction as _fraction
from runtools.schema import get_path, set_path
from runtools.schema import non_negative as _non_negative
from runtools.schema import one_of as _one_of
from runtools.schema import positive as _positive

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


def _device(v: str) -> str | None:
    if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
        return None
    return f"unknown device {v!r}; choose auto, cpu, cuda or cuda:<index>"


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
    lr_schedule: str = _field(
        "plateau", _one_of("plateau", "cosine"), "plateau: ReduceLROnPlateau; cosine: anneal to min_lr over each stage's epochs"
    )
    lr_factor: float = _field(0.5, _fraction, "ReduceLROnPlateau factor")
    lr_patience: int = _field(10, _non_negative, "ReduceLROnPlateau patience (epochs)")
    min_lr: float = _field(0.0, _non_negative, "lowest learning rate of either schedule")
    patience: int | None = _field(30, None, "early-stopping patience in the first stage (null: none)")
    stages: list[StageConfig] = _field([], None, "extra stages, each at a tenth of the previous lr")
    fine_tune_worst: int = _field(
        0, _non_negative, "after the last stage, fine-tune on the N training spectra with the worst loss (0: off)"
    )
    fine_tune_epochs: int = _field(0, _non_negative, "epochs of that fine-tuning, at a tenth of the last stage's lr (0: off)")
    grad_clip: float | None = _field(None, _positive, "clip the gradient norm to this value (null: off)")
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
    overwrite: bool = _field(False, None, "replace an earlier run's results in run_dir (moved to run_dir/previous/)")
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
    return schema.from_dict(data, cls, source=source, error=ConfigError, check=_check_networks)


def _check_networks(value: tp.Any, errors: list[str]) -> None:
    if isinstance(value, Config):
        for name in STAGES:
            net = getattr(value, name)
            if net.network is not None and net.architecture:
                errors.append(
                    f"{name}: give either network (a JSON file) or architecture (knobs for fspnet.nets.{name}_config), not both"
                )


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
        out[key.strip()] = schema.float_string(value)
    return out
