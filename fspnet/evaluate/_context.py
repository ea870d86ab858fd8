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
    from fspnet.physics import SourceModel
    from fspnet.response import Folder
    from fspnet.train import Run

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


def param_infos(param_names: tp.Sequence[str], log_params: tp.Sequence[int], ds: SpectrumDataset | None = None) -> list[ParamInfo]:
    """Parameter descriptions: the source model's bounds and units where the names match, else the data's range."""
    from fspnet.physics import SourceModel

    known = {p.name: p for p in SourceModel().params}
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

    model: SourceModel
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


def make_physics(ds: SpectrumDataset, where: str) -> Physics:
    """The source model and a float64 folder with the response the data were made with.

    The response is the one named in the generator config (``source.config.response``) when
    there is one, else the bundled NICER response.

    Raises:
        DataError: naming ``where`` if the data's energy bins do not match the folding's.
    """
    from fspnet.physics import SourceModel, energy_grid
    from fspnet.response import Folder, Response

    cfg = ds.source.get("config") if isinstance(ds.source.get("config"), dict) else {}
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
    return Physics(SourceModel(), folder, edges, detectors)


def _detectors(ds: SpectrumDataset) -> float:
    files = ds.source.get("files")
    if isinstance(files, list) and files and isinstance(files[0], dict) and files[0].get("detectors"):
        dets = {float(f.get("detectors", 52)) for f in files}
        if len(dets) > 1:
            log.warning("spectra use different detector counts %s; folding with %g", sorted(dets), max(dets))
        return max(dets)
    cfg = ds.source.get("config") if isinstance(ds.source.get("config"), dict) else {}
    return float((cfg.get("response") or {}).get("detectors", 52))


def exposures(ds: SpectrumDataset, detectors: float) -> tuple[np.ndarray, str]:
    """[N] exposures in s and where they came from (see the module docstring)."""
    n = len(ds)
    files = ds.source.get("files")
    if isinstance(files, list) and len(files) == n and all(isinstance(f, dict) and f.get("exposure_s") for f in files):
        return np.array([float(f["exposure_s"]) for f in files]), "EXPOSURE keyword of each file"
    cfg = ds.source.get("config") if isinstance(ds.source.get("config"), dict) else {}
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
    cfg = ds.source.get("config") if isinstance(ds.source.get("config"), dict) else {}
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


def load_inputs(run_dir: str | os.PathLike[str], data: str | os.PathLike[str], device: str = "cpu") -> tuple[Run, SpectrumDataset]:
    """Read the encoder run and the dataset, checking that they fit together.

    Raises:
        DataError: naming the run directory or the data file at fault.
    """
    from fspnet.train import load_run

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
