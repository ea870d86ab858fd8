"""Synthetic training spectra: a forward model folded through a response, with noise.

``python -m fspnet.synthesize --config configs/synthesize.yaml --n 100000 --out synth.h5``

Each spectrum is drawn as FSP-Net drew its XSPEC ``fakeit`` spectra:

1. parameters from uniform / log-uniform draws within each parameter's bounds (or a Latin
   hypercube over the same unit cube);
2. the model on the model grid, folded through the response into FSP-Net's 240 groups
   (:class:`fspnet.response.Folder`). The model is ``model.backend``: ``native`` (default) is
   FSP-Net's ``tbabs(simplcutx(ezdiskbb))`` in torch (:mod:`fspnet.physics`); ``xspec`` is any
   XSPEC expression (``model.expression``, e.g. ``tbabs*(diskbb+powerlaw)``) evaluated with
   XSPEC's own library (:class:`fspnet.physics.XspecModel`, ``pip install fspnet[xspec]``),
   its free parameters those of ``sampling.params`` (``diskbb.Tin``, ...), every other one
   frozen at XSPEC's default, at ``model.fixed`` or tied by ``model.ties``;
3. source-region counts ``on ~ Poisson(t * (source rate + scaled background rate))`` and, with
   a background, off-source counts ``off ~ Poisson(t_off * background rate)``; in clean mode the
   expected values are used instead;
4. the net spectrum ``(on - off * scale * t / t_off) / t / detectors / width`` in counts s^-1
   keV^-1 detector^-1, with one-sigma uncertainties ``sqrt(max(on + (scale t / t_off)^2 off, 1))``
   in the same units;
5. spectra with fewer than ``min_counts`` net source counts in the band are rejected (FSP-Net's
   rule, 1e4) and drawing continues until ``n`` are accepted, in chunks that bound the memory.
   Draws whose counts provably fall short (a model-free upper bound, see
   :meth:`Synthesizer.upper_counts`) are rejected without evaluating the model, which leaves
   the accepted distribution unchanged and saves most of the rejected draws' cost.

Chunk ``i`` draws from its own generator seeded with ``[seed, i]``, so the same config and
seed give identical arrays and an identical file, whatever the number of worker processes.
Uncertainties are Poisson (``max(sqrt(counts), 1)``, as FSP-Net) with the background term added.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import time
import typing as tp
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fspnet import __version__
from fspnet.data import SpectrumDataset, write_dataset
from fspnet.errors import ConfigError, DataError, FspnetError
from runtools.io import read_mapping
from runtools.schema import at_least, build, field, one_of, positive

__all__ = [
    "SynthesizeConfig",
    "Synthesizer",
    "build_model",
    "dataset_model",
    "load_synthesize_config",
    "main",
    "model_description",
    "synthesize",
]

_log = logging.getLogger(__name__)

SPECTRUM_UNIT = "counts s^-1 keV^-1 detector^-1"


# ----------------------------------------------------------------------------- configuration


def _workers(v: int) -> str | None:
    return None if v >= 0 else f"must be >= 1 (or 0: one per core), but got {v!r}"


@dataclasses.dataclass
class ParamRange:
    """Sampling range of one parameter (defaults: the model's bounds and log flag)."""

    low: float | None = None
    high: float | None = None
    log: bool | None = None


@dataclasses.dataclass
class SamplingConfig:
    """How parameters are drawn: ``uniform`` (per-parameter uniform/log-uniform) or ``latin_hypercube``."""

    method: str = field("uniform", one_of("latin_hypercube", "uniform"), "how parameters are drawn")
    params: dict[str, ParamRange] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ExposureConfig:
    """Exposure in s: ``value`` fixed, or drawn from ``range`` [low, high] (log-uniform when ``log``)."""

    value: float = 1000.0
    range: list[float] | None = None
    log: bool = False


@dataclasses.dataclass
class BackgroundConfig:
    """An OGIP background spectrum (``file``) or none (``file: null``).

    ``source_backscal`` is the source region's BACKSCAL: the background is scaled by
    ``source_backscal / BACKSCAL(file)``. The simulated off-source spectrum has exposure
    ``exposure_ratio`` times the source exposure (1, as XSPEC ``fakeit``).
    """

    file: str | None = None
    source_backscal: float = field(1.0, positive, "BACKSCAL of the source region")
    exposure_ratio: float = field(1.0, positive, "off-source exposure / source exposure")


@dataclasses.dataclass
class ResponseConfig:
    """The response: ``rmf``/``arf`` files, or both null for the bundled NICER response."""

    rmf: str | None = None
    arf: str | None = None
    detectors: float = field(52, positive, "number of detectors the response is normalised to")


NATIVE_EXPRESSION = "tbabs*simplcutx(ezdiskbb)"


@dataclasses.dataclass
class ModelGridConfig:
    """The forward model and its energy grid (FSP-Net's XSPEC ``energies 0.002 200 2000 log``).

    Args:
        n_bins, low_kev, high_kev: the log-spaced model energy grid.
        backend: ``native`` (FSP-Net's source model in torch) or ``xspec`` (any XSPEC
            expression, evaluated with XSPEC's library through ``xspectrampoline``).
        expression: the XSPEC model expression (``xspec``; ``native`` takes only its own
            ``tbabs*simplcutx(ezdiskbb)`` or null).
        fixed: ``{component.param: value}`` frozen values (``xspec``; others: XSPEC's defaults).
        ties: ``{component.param: other.param}``: equal parameters (``xspec``).
        abund: XSPEC abundance table (``abund``), ``wilm`` as FSP-Net's tbabs.
        xsect: XSPEC photoionisation cross sections (``xsect``).
    """

    n_bins: int = 2000
    low_kev: float = 0.002
    high_kev: float = 200.0
    backend: str = field("native", one_of("native", "xspec"), "native (torch) or xspec (xspectrampoline)")
    expression: str | None = None
    fixed: dict[str, float] = dataclasses.field(default_factory=dict)
    ties: dict[str, str] = dataclasses.field(default_factory=dict)
    abund: str = "wilm"
    xsect: str = "vern"


@dataclasses.dataclass
class SynthesizeConfig:
    """The resolved ``configs/synthesize.yaml``; every field has a default.

    Args:
        seed: seed of every random draw (parameters, exposures, noise).
        noise: ``poisson`` (counts drawn) or ``none`` (clean, expected values).
        min_counts: reject spectra with fewer net source counts summed over the bins.
        chunk_size: draws simulated per batch (each with its own seeded generator); bounds
            peak memory (~100 MB per 1000).
        max_draws_factor: give up after ``n * max_draws_factor`` draws (acceptance too low).
        fold_dtype: ``float32`` or ``float64`` precision of the folding product.
        workers: processes simulating chunks in parallel, one torch thread each (robust on
            shared CPUs; 0: one per core); the output is identical for any number of workers.
        prescreen: skip the model for draws that provably fall below ``min_counts`` (see
            :meth:`Synthesizer.upper_counts`); the accepted spectra follow the same distribution.
    """

    seed: int = field(0, None, "seed of every random draw")
    noise: str = field("poisson", one_of("none", "poisson"), "poisson or none")
    min_counts: float = field(1e4, at_least(0), "reject spectra with fewer net source counts")
    chunk_size: int = field(512, at_least(1), "draws simulated per batch")
    max_draws_factor: float = field(100.0, at_least(1), "give up after n * max_draws_factor draws")
    fold_dtype: str = field("float32", one_of("float32", "float64"), "precision of the folding product")
    workers: int = field(1, _workers, "processes simulating chunks (0: one per core)")
    prescreen: bool = True
    model: ModelGridConfig = dataclasses.field(default_factory=ModelGridConfig)
    response: ResponseConfig = dataclasses.field(default_factory=ResponseConfig)
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    exposure: ExposureConfig = dataclasses.field(default_factory=ExposureConfig)
    background: BackgroundConfig = dataclasses.field(default_factory=BackgroundConfig)

    def to_dict(self) -> dict[str, tp.Any]:
        """The config as plain JSON-able data."""
        return dataclasses.asdict(self)


def validate_config(data: dict[str, tp.Any] | None, source: str = "synthesize config") -> SynthesizeConfig:
    """Check a synthesize config (a plain dict) and return the resolved :class:`SynthesizeConfig`.

    Every problem is collected and raised once, each with its key path: per-field checks
    (types, choices, bounds) are declared on the dataclasses and run by
    :func:`runtools.schema.build`; the checks below span fields or need the model.

    Raises:
        ConfigError: e.g. ``configs/synthesize.yaml: exposure.range: must be [low, high] with 0 < low <= high``.
    """
    errors: list[str] = []
    cfg = build(_undot(data), SynthesizeConfig, errors)
    from fspnet.physics import SourceModel

    names = list(SourceModel().param_names)
    bounds = {n: p for n, p in zip(names, SourceModel().params)}
    xspec = cfg.model.backend == "xspec"
    if xspec:
        bounds = {}  # the expression's parameters are checked by build_model below
        if not cfg.model.expression:
            errors.append("model.expression: the xspec backend needs an XSPEC model expression, e.g. 'tbabs*(diskbb+powerlaw)'")
        elif not cfg.sampling.params:
            errors.append(
                "sampling.params: name the free parameters of the expression (e.g. diskbb.Tin: {low: 0.1, high: 3, log: true})"
            )
        else:
            try:
                build_model(cfg)
            except ImportError:
                errors.append("model.backend: xspec needs XSPEC's model library: pip install 'fspnet[xspec]' (xspectrampoline)")
            except ConfigError as err:
                errors.extend(str(err).splitlines())
    elif cfg.model.backend == "native":  # any other value is reported by build
        if cfg.model.expression and cfg.model.expression.replace(" ", "").lower() not in (
            NATIVE_EXPRESSION,
            "tbabs*simplcutx*ezdiskbb",
        ):
            errors.append(
                f"model.expression: the native backend computes only {NATIVE_EXPRESSION}, but got {cfg.model.expression!r}; set model.backend: xspec for other models"
            )
        for key in ("fixed", "ties"):
            if getattr(cfg.model, key):
                errors.append(f"model.{key}: only the xspec backend freezes or ties parameters")
    if cfg.model.n_bins < 2 or not 0 < cfg.model.low_kev < cfg.model.high_kev:
        errors.append("model: needs n_bins >= 2 and 0 < low_kev < high_kev")
    if cfg.response.arf is not None and cfg.response.rmf is None:
        errors.append("response.arf: an ARF needs an RMF (response.rmf)")
    for key in ("rmf", "arf"):
        f = getattr(cfg.response, key)
        if f is not None and not Path(f).is_file():
            errors.append(f"response.{key}: file not found: {f}")
    for name, rng in cfg.sampling.params.items():
        if xspec:
            continue
        if name not in bounds:
            errors.append(f"sampling.params.{name}: unknown parameter; valid parameters are {', '.join(names)}")
            continue
        p = bounds[name]
        low = p.bounds[0] if rng.low is None else rng.low
        high = p.bounds[1] if rng.high is None else rng.high
        log = p.log if rng.log is None else rng.log
        if not low <= high or (log and low <= 0):
            errors.append(f"sampling.params.{name}: needs low <= high (and low > 0 when log), but got [{low}, {high}] log={log}")
    e = cfg.exposure
    if e.range is not None:
        if len(e.range) != 2 or not 0 < e.range[0] <= e.range[1]:
            errors.append(f"exposure.range: must be [low, high] with 0 < low <= high, but got {e.range}")
    elif e.value <= 0:
        errors.append(f"exposure.value: must be > 0 s, but got {e.value}")
    b = cfg.background
    if b.file is not None and not Path(b.file).is_file():
        errors.append(f"background.file: file not found: {b.file}")
    if errors:
        raise ConfigError(f"{source}: " + f"\n{source}: ".join(errors))
    return cfg


_RANGE_KEYS = {"low", "high", "log"}


def _join_nested(d: tp.Any, is_leaf: tp.Callable[[tp.Any], bool], prefix: str = "") -> tp.Any:
    """``{"diskbb": {"Tin": x}}`` -> ``{"diskbb.Tin": x}`` down to the leaves ``is_leaf`` picks."""
    if not isinstance(d, dict):
        return d
    out: dict[str, tp.Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not is_leaf(value):
            out.update(_join_nested(value, is_leaf, name + "."))
        else:
            out[name] = value
    return out


def _undot(data: tp.Any) -> tp.Any:
    """Accept ``component.parameter`` keys written nested (``diskbb: {Tin: ...}``), as YAML users
    may write them and as dotted-path overrides (``hpo``, ``--set``) create them."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    sampling, model = data.get("sampling"), data.get("model")
    if isinstance(sampling, dict) and isinstance(sampling.get("params"), dict):
        leaf = lambda v: not v or bool(set(v) & _RANGE_KEYS) or not all(isinstance(x, dict) for x in v.values())
        data["sampling"] = {**sampling, "params": _join_nested(sampling["params"], leaf)}
    if isinstance(model, dict):
        data["model"] = {
            **model,
            **{k: _join_nested(model[k], lambda v: False) for k in ("fixed", "ties") if isinstance(model.get(k), dict)},
        }
    return data


def load_synthesize_config(path: str | os.PathLike[str] | None, overrides: dict[str, tp.Any] | None = None) -> SynthesizeConfig:
    """Read and validate a synthesize YAML file (``None``: defaults only).

    Args:
        path: the YAML file.
        overrides: top-level keys that replace the file's (e.g. ``{"seed": 3}``).

    Raises:
        ConfigError: naming the file and key path of every problem.
    """
    data: dict[str, tp.Any] = {}
    if path is not None:
        data = read_mapping(path, ConfigError)
    data = {**data, **(overrides or {})}
    return validate_config(data, str(path) if path is not None else "synthesize config")


def build_model(config: SynthesizeConfig) -> tp.Any:
    """The forward model a (validated) config names: a :class:`~fspnet.physics.Component`.

    ``native``: :class:`~fspnet.physics.SourceModel`. ``xspec``: an
    :class:`~fspnet.physics.XspecModel` of ``model.expression`` whose free parameters are
    ``sampling.params`` (their ranges and log flags; unset ``low``/``high`` take XSPEC's soft
    limits, unset ``log`` is false).

    Raises:
        ConfigError: naming the unknown component or parameter and listing the valid ones.
        ImportError: for ``xspec`` without ``xspectrampoline``.
    """
    from fspnet.physics import SourceModel, XspecModel

    m = config.model
    if m.backend != "xspec":
        return SourceModel()
    from fspnet.physics._xspec import xspec_components

    free: dict[str, tuple[float, float, bool]] = {}
    comps = xspec_components()
    for name, rng in config.sampling.params.items():
        low, high = rng.low, rng.high
        if low is None or high is None:  # XSPEC's soft limits (norm: none)
            comp, _, par = name.rpartition(".")
            info = comps.get(comp.rsplit("_", 1)[0].lower() if comp.lower() not in comps else comp.lower())
            soft = next(
                ((p.soft_min, p.soft_max) for p in (info.params if info else ()) if p.name.lower() == par.lower()), (0.0, 1e24)
            )
            low = soft[0] if low is None else low
            high = soft[1] if high is None else high
        free[name] = (float(low), float(high), bool(rng.log))
    return XspecModel(m.expression or "", free=free, fixed=m.fixed, ties=m.ties, abundances=m.abund, cross_sections=m.xsect)


def model_description(model: tp.Any) -> dict[str, tp.Any]:
    """What a dataset records about its forward model: expression, backend and parameters."""
    if hasattr(model, "describe"):
        return model.describe()
    return {
        "expression": NATIVE_EXPRESSION,
        "backend": "native",
        "free": list(model.param_names),
        "repr": "TBabs() * SimplCutX(EzDiskBB())",
    }


def dataset_model(source: tp.Mapping[str, tp.Any], param_names: tp.Sequence[str] | None = None) -> tp.Any:
    """The forward model a dataset was made with, from its ``source`` attribute.

    Data from the ``xspec`` backend rebuild their :class:`~fspnet.physics.XspecModel` from the
    recorded generator config; everything else (native data, real spectra) gets the native
    :class:`~fspnet.physics.SourceModel`.

    Raises:
        ConfigError: if the recorded model cannot be rebuilt, or its parameters are not
            ``param_names``.
    """
    from fspnet.physics import SourceModel

    cfg: dict[str, tp.Any] = source["config"] if isinstance(source.get("config"), dict) else {}
    if (cfg.get("model") or {}).get("backend", "native") != "xspec":
        model = SourceModel()
    else:
        errors: list[str] = []
        data = {k: cfg[k] for k in ("model", "sampling") if k in cfg}
        resolved = build(_undot(data), SynthesizeConfig, errors)
        if errors:
            raise ConfigError("dataset source.config: " + "; ".join(errors))
        try:
            model = build_model(resolved)
        except ImportError:
            raise ConfigError(
                "the data were made with the xspec backend, which needs XSPEC's model library: pip install 'fspnet[xspec]'"
            ) from None
    if param_names is not None and list(param_names) and list(param_names) != list(model.param_names):
        raise ConfigError(
            f"the dataset's parameters {list(param_names)} are not those of its model {model!r}: {list(model.param_names)}"
        )
    return model


# ----------------------------------------------------------------------------- generator


class Synthesizer:
    """The generator with every fixed piece (model, folding matrix, background) built once.

    Args:
        config: a validated :class:`SynthesizeConfig` (or a plain dict, validated here).

    Example:
        >>> gen = Synthesizer({"seed": 1})  # doctest: +SKIP
        >>> ds = gen.run(1000)  # doctest: +SKIP
    """

    def __init__(self, config: SynthesizeConfig | dict[str, tp.Any] | None = None) -> None:
        from fspnet._memory import retain_freed_memory
        from fspnet.physics import energy_grid
        from fspnet.response import Folder, Grouping, Response, read_pha

        cfg = config if isinstance(config, SynthesizeConfig) else validate_config(config)
        self.config = cfg
        retain_freed_memory()  # each chunk allocates and frees ~100 MB of model temporaries
        self.model = build_model(cfg)
        self.param_names = list(self.model.param_names)
        self.edges = energy_grid(cfg.model.n_bins, cfg.model.low_kev, cfg.model.high_kev)
        if cfg.response.rmf is None:
            response = Response.nicer()
        else:
            response = Response.from_files(cfg.response.rmf, cfg.response.arf)
        dtype = torch.float32 if cfg.fold_dtype == "float32" else torch.float64
        self.folder = Folder(response, self.edges, Grouping.fspnet(), cfg.response.detectors, dtype=dtype)
        # Sampling box in the unit cube: p = low + u (high - low), in log10 for log parameters.
        lows, highs, logs = [], [], []
        for name, p in zip(self.param_names, self.model.params):
            # xspec: the model's bounds and log flags are the sampling ranges already
            r = cfg.sampling.params.get(name, ParamRange()) if cfg.model.backend == "native" else ParamRange()
            lows.append(p.bounds[0] if r.low is None else r.low)
            highs.append(p.bounds[1] if r.high is None else r.high)
            logs.append(p.log if r.log is None else r.log)
        self._log = np.array(logs, dtype=bool)
        self._low = np.where(self._log, np.log10(np.maximum(lows, 1e-300)), lows)
        self._high = np.where(self._log, np.log10(np.maximum(highs, 1e-300)), highs)
        self.log_params = [i for i, p in enumerate(self.model.params) if p.log]
        self._screen_table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._screen_checked = False
        # Background rate per group in the background region (counts/s), and its scaling.
        self._bkg_var_rate = 0.0  # background variance of the net counts per second of exposure
        self._bkg_rate: np.ndarray | None = None
        self._bkg_scale = 1.0
        self._bkg_info: dict[str, tp.Any] | None = None
        if cfg.background.file is not None:
            pha = read_pha(cfg.background.file)
            try:
                counts = self.folder.grouping.apply(pha.counts, pha.channels)
            except FspnetError as e:
                raise ConfigError(f"background.file: {cfg.background.file}: {e}") from None
            backscal = np.asarray(pha.backscal, dtype=np.float64)
            if backscal.ndim or backscal <= 0:
                raise ConfigError(f"background.file: {cfg.background.file}: BACKSCAL must be one positive keyword value")
            self._bkg_rate = counts / pha.exposure
            self._bkg_scale = cfg.background.source_backscal / float(backscal)
            alpha = self._bkg_scale / cfg.background.exposure_ratio
            self._bkg_var_rate = float(self._bkg_rate.sum()) * (self._bkg_scale + alpha**2 * cfg.background.exposure_ratio)
            self._bkg_info = {"file": str(cfg.background.file), "exposure_s": pha.exposure, "backscal": float(backscal)}

    # -- pieces -------------------------------------------------------------------------------

    def sample_params(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, P] physical parameters drawn per ``sampling.method``."""
        p = len(self.param_names)
        if self.config.sampling.method == "latin_hypercube":
            from scipy.stats import qmc

            u = qmc.LatinHypercube(d=p, seed=rng).random(n)
        else:
            u = rng.random((n, p))
        x = self._low + u * (self._high - self._low)
        return np.where(self._log, 10.0**x, x)

    def sample_exposure(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n] exposures, s."""
        e = self.config.exposure
        if e.range is None:
            return np.full(n, e.value)
        lo, hi = e.range
        if e.log:
            return 10.0 ** rng.uniform(math.log10(lo), math.log10(hi), n)
        return rng.uniform(lo, hi, n)

    def expected_rate(self, params: np.ndarray) -> np.ndarray:
        """[n, G] expected source count rate per group (counts s^-1) for physical ``params`` [n, P]."""
        with torch.no_grad():
            # only the model bins that reach the response (a third of the grid is not folded)
            flux = self.model(self.edges, torch.as_tensor(params, dtype=torch.float64), bins=self.folder.model_range)
            return self.folder.counts_rate(flux).numpy()

    def simulate(
        self, params: np.ndarray, exposure: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Simulate spectra for given parameters.

        Returns:
            ``(spectra, uncertainties, net_counts)``: [n, G] counts s^-1 keV^-1 detector^-1
            (float64) and [n] net source counts summed over the bins.
        """
        t = exposure[:, None]
        src = self.expected_rate(params) * t  # [n, G] expected source counts
        src = np.where(np.isfinite(src), np.maximum(src, 0.0), np.inf)  # inf rows get rejected below
        alpha = 0.0  # weight of one off-source count in the source region
        if self._bkg_rate is None:
            if self.config.noise == "poisson":
                on = _poisson(rng, src)
            else:
                on = src
            net = on
            var = on
        else:
            ratio = self.config.background.exposure_ratio
            b_on = self._bkg_rate * self._bkg_scale * t  # expected background counts in the source region
            b_off = self._bkg_rate * ratio * t  # expected counts in the off-source spectrum
            alpha = self._bkg_scale / ratio
            if self.config.noise == "poisson":
                on = _poisson(rng, src + b_on)
                off = _poisson(rng, b_off)
            else:
                on, off = src + b_on, b_off
            net = on - alpha * off
            var = on + alpha**2 * off
        norm = 1.0 / (t * self.folder.detectors * self.folder.energy_widths)  # counts -> spectrum units
        spectra = net * norm
        sigma = np.sqrt(np.maximum(var, 1.0)) * norm
        return spectra, sigma, net.sum(axis=1)

    # -- the loop -----------------------------------------------------------------------------

    def chunk(self, index: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Simulate chunk ``index`` of ``chunk_size`` draws; return its accepted rows.

        Chunk ``i`` draws from its own generator ``default_rng([seed, i])``, so the output
        depends only on the seed and the config, not on how chunks are scheduled.

        Returns:
            ``(params [k, P] float64, spectra [k, G] float32, uncertainties [k, G] float32,
            number of draws the model was evaluated for)``.
        """
        cfg = self.config
        rng = np.random.default_rng([seed, index])
        p = self.sample_params(cfg.chunk_size, rng)
        t = self.sample_exposure(cfg.chunk_size, rng)
        if cfg.prescreen and cfg.min_counts > 0:
            up = self.upper_counts(p, t)
            if cfg.noise == "poisson":  # 8 sigma above the bound (plus the background's spread)
                up = up + 8.0 * np.sqrt(up + self._bkg_var_rate * t) + 10.0
            keep = np.flatnonzero(~(up < cfg.min_counts))
            p, t = p[keep], t[keep]
        s, u, counts = self.simulate(p, t, rng)
        ok = (counts >= cfg.min_counts) & np.isfinite(s).all(axis=1) & np.isfinite(u).all(axis=1)
        return p[ok], s[ok].astype(np.float32), u[ok].astype(np.float32), len(p)

    def upper_counts(self, params: np.ndarray, exposure: np.ndarray) -> np.ndarray:
        """[n] upper bound of the expected source counts summed over the bins, without the model.

        The folded counts of ``tbabs(simplcutx(ezdiskbb))`` are linear in ``norm`` and in
        ``fsc`` (``(1 - fsc) A + fsc B``), fall with ``nh`` (absorption) and rise with
        ``kt_max`` (a hotter disk emits more photons at every energy). ``A`` and ``B`` are
        tabulated at norm 1 on a grid of ``nh`` x ``kt_max`` (``B`` as its maximum over a grid
        of ``gamma``), read at the grid node with lower ``nh`` and higher ``kt_max`` than the
        draw and doubled for safety: a draw whose bound is below ``min_counts`` could never
        be accepted, so skipping it leaves the accepted distribution unchanged
        (``tests/.../test_synthesize.py::test_prescreen_bound_holds`` checks the bound).
        Models other than the five-parameter source model get an infinite bound.
        """
        screen = self._screen()
        if screen is None:
            return np.full(len(params), np.inf)
        nh_nodes, kt_nodes, a, b = screen
        ix = {n: i for i, n in enumerate(self.param_names)}
        nh, fsc, kt = params[:, ix["nh"]], params[:, ix["fsc"]], params[:, ix["kt_max"]]
        i = np.clip(np.searchsorted(nh_nodes, nh, side="right") - 1, 0, len(nh_nodes) - 1)
        k = np.clip(np.searchsorted(kt_nodes, kt, side="left"), 0, len(kt_nodes) - 1)
        outside = (nh < nh_nodes[0]) | (kt > kt_nodes[-1])
        rate = 2.0 * ((1.0 - fsc) * a[i, k] + fsc * b[i, k])
        return np.where(outside, np.inf, params[:, ix["norm"]] * exposure * rate)

    def _screen(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        if self._screen_table is not None or self._screen_checked:
            return self._screen_table
        self._screen_checked = True
        if tuple(self.param_names) != ("nh", "gamma", "fsc", "kt_max", "norm"):
            return None
        lo = np.where(self._log, 10.0**self._low, self._low)
        hi = np.where(self._log, 10.0**self._high, self._high)
        space = lambda j, n: np.geomspace(lo[j], hi[j], n) if self._log[j] else np.linspace(lo[j], hi[j], n)
        nh_nodes, gammas, kt_nodes = space(0, 17), space(1, 9), space(3, 25)
        grid = np.zeros((len(nh_nodes), len(kt_nodes), 1 + len(gammas), 5))
        grid[..., 0] = nh_nodes[:, None, None]
        grid[..., 3] = kt_nodes[None, :, None]
        grid[..., 4] = 1.0
        grid[..., 0, 1], grid[..., 0, 2] = gammas[0], 0.0  # fsc = 0: A, gamma irrelevant
        grid[..., 1:, 1], grid[..., 1:, 2] = gammas, 1.0  # fsc = 1: B for each gamma
        flat = grid.reshape(-1, 5)
        total = np.concatenate([self.expected_rate(flat[j : j + 1024]).sum(axis=1) for j in range(0, len(flat), 1024)]).reshape(
            grid.shape[:3]
        )
        total = np.where(np.isfinite(total), total, np.inf)
        self._screen_table = (nh_nodes, kt_nodes, total[..., 0], total[..., 1:].max(axis=-1))
        return self._screen_table

    def _chunks(self, seed: int, max_chunks: int, workers: int) -> tp.Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
        """Accepted rows of chunks 0, 1, 2, ... in order (computed ahead by ``workers`` processes)."""
        if workers <= 1:
            for i in range(max_chunks):
                yield self.chunk(i, seed)
            return
        import concurrent.futures
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # fork is unsafe after torch has started threads
        # The prescreen's table (~4,000 model evaluations) is made once here, not by every worker.
        screen = self._screen() if self.config.prescreen and self.config.min_counts > 0 else None
        with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(self.config, screen)
        ) as pool:
            pending: list[concurrent.futures.Future] = []
            nxt = 0
            try:
                while nxt < max_chunks or pending:
                    while nxt < max_chunks and len(pending) < 2 * workers:
                        pending.append(pool.submit(_worker_chunk, nxt, seed))
                        nxt += 1
                    yield pending.pop(0).result()
            finally:
                for f in pending:
                    f.cancel()

    def run(self, n: int, seed: int | None = None, progress: bool = True, workers: int | None = None) -> SpectrumDataset:
        """Draw until ``n`` spectra are accepted; return them as a :class:`SpectrumDataset`.

        Args:
            n: spectra to accept.
            seed: overrides ``config.seed``.
            progress: show a tqdm progress bar.
            workers: overrides ``config.workers``.

        Raises:
            DataError: if more than ``n * max_draws_factor`` draws were needed (the message
                gives the acceptance rate and what to change).
        """
        cfg = self.config
        if n < 1:
            raise ConfigError(f"n: must be >= 1, but got {n}")
        seed = cfg.seed if seed is None else seed
        workers = cfg.workers if workers is None else workers
        workers = workers or (os.cpu_count() or 1)  # 0: every core
        g = len(self.folder)
        spectra = np.empty((n, g), dtype=np.float32)
        sigma = np.empty((n, g), dtype=np.float32)
        params = np.empty((n, len(self.param_names)), dtype=np.float64)
        filled, draws, evaluated = 0, 0, 0
        max_chunks = max(1, int(math.ceil(n * cfg.max_draws_factor / cfg.chunk_size)))
        start = time.perf_counter()
        with tqdm(total=n, unit="spectra", desc="synthesize", disable=not progress, leave=False) as bar:
            for p, s, u, n_eval in self._chunks(seed, max_chunks, workers):
                k = min(len(p), n - filled)
                spectra[filled : filled + k] = s[:k]
                sigma[filled : filled + k] = u[:k]
                params[filled : filled + k] = p[:k]
                filled += k
                draws += cfg.chunk_size
                evaluated += n_eval
                bar.update(k)
                bar.set_postfix(acceptance=f"{filled / draws:.2f}")
                if filled >= n:
                    break
        if filled < n:
            raise DataError(
                f"synthesize: only {filled} of {n} spectra accepted after {draws} draws "
                f"(acceptance {filled / max(draws, 1):.2e}; min_counts={cfg.min_counts:g}); raise the "
                f"exposure or the norm range, lower min_counts, or raise max_draws_factor={cfg.max_draws_factor:g}"
            )
        elapsed = time.perf_counter() - start
        _log.info("synthesize: %d spectra from %d draws in %.1f s (%.0f spectra/s)", n, draws, elapsed, n / elapsed)
        units = {"spectra": SPECTRUM_UNIT, "uncertainties": SPECTRUM_UNIT, "energy": "keV"}
        units.update({name: p.unit for name, p in zip(self.param_names, self.model.params)})
        source = {
            "generator": "fspnet.synthesize",
            "fspnet_version": __version__,
            "model": model_description(self.model),
            "n": n,
            "seed": seed,
            "draws": draws,
            "evaluated": evaluated,  # draws the model was evaluated for (the rest failed the prescreen)
            "acceptance": filled / draws,
            "config": {k: v for k, v in cfg.to_dict().items() if k != "workers"},  # workers do not change the data
            "response": self.folder.response.provenance or {"name": self.folder.response.name},
            "background": self._bkg_info,
            "grouping": "fspnet: PI groups 2/3/4/5/6/2 at 20/248/600/1200/1494, 0.3-10 keV, first 240",
        }
        return SpectrumDataset(
            spectra=spectra,
            energy_centres=self.folder.energy_centres,
            energy_widths=self.folder.energy_widths,
            params=params,
            uncertainties=sigma,
            names=None,
            param_names=self.param_names,
            log_params=self.log_params,
            units=units,
            source=source,
        )


_WORKER: Synthesizer | None = None


def _init_worker(config: SynthesizeConfig, screen: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
    global _WORKER
    torch.set_num_threads(1)
    _WORKER = Synthesizer(config)
    if screen is not None:  # the parent's prescreen table: the same config, the same table
        _WORKER._screen_table, _WORKER._screen_checked = screen, True


def _worker_chunk(index: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    assert _WORKER is not None
    return _WORKER.chunk(index, seed)


def _poisson(rng: np.random.Generator, lam: np.ndarray) -> np.ndarray:
    # numpy refuses lam > ~1e19; such spectra are far above any count cut, so the mean stands in.
    big = lam > 1e15
    out = rng.poisson(np.where(big, 0.0, lam)).astype(np.float64)
    return np.where(big, lam, out)


def synthesize(
    config: SynthesizeConfig | dict[str, tp.Any] | None,
    n: int,
    seed: int | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> SpectrumDataset:
    """Generate ``n`` accepted synthetic spectra and optionally write them (atomically) to ``out``.

    The function the trainer calls to make data; the CLI wraps it.

    Args:
        config: a synthesize config dict (as in ``configs/synthesize.yaml``), a
            :class:`SynthesizeConfig`, or ``None`` for the defaults.
        n: number of spectra.
        seed: overrides ``config["seed"]``.
        out: HDF5 file to write (the dataset contract), or ``None``.
        progress: show a tqdm progress bar.

    Returns:
        The :class:`~fspnet.data.SpectrumDataset`.

    Raises:
        ConfigError: for an invalid config (every key path at fault).
        DataError: if the acceptance is too low to reach ``n`` spectra.

    Example:
        >>> ds = synthesize({"seed": 0, "noise": "poisson"}, n=100, out="synth.h5")  # doctest: +SKIP
        >>> ds.spectra.shape  # doctest: +SKIP
        (100, 240)
    """
    ds = Synthesizer(config).run(n, seed=seed, progress=progress)
    if out is not None:
        write_dataset(out, ds)
    return ds


def main(argv: list[str] | None = None) -> int:
    """``python -m fspnet.synthesize``: parse arguments and call :func:`synthesize`."""
    parser = argparse.ArgumentParser(prog="python -m fspnet.synthesize", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="synthesize YAML (default: built-in defaults)")
    parser.add_argument("--n", type=int, required=True, help="number of accepted spectra")
    parser.add_argument("--out", type=Path, required=True, help="output HDF5 dataset")
    parser.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (overrides the config)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = load_synthesize_config(args.config, None if args.workers is None else {"workers": args.workers})
        start = time.perf_counter()
        ds = synthesize(cfg, args.n, seed=args.seed, out=args.out, progress=not args.no_progress)
    except FspnetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(
        f"wrote {args.out}: {len(ds)} spectra x {ds.spectra.shape[1]} bins "
        f"({ds.source['draws']} draws, acceptance {ds.source['acceptance']:.2f}) in {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
