"""Evaluation of a decoder run: held-out reconstruction error and time per spectrum.

A decoder maps a spectrum's parameters to the spectrum. On a held-out dataset with true
parameters it is judged by the mean squared error of its reconstructions, in the space it was
trained in (scaled log spectra: the trainer's ``loss``) and in physical units
(counts s^-1 keV^-1 detector^-1, squared), and by its time per spectrum on this machine. On
synthetic noisy spectra the error has a floor no decoder can beat, the noise itself
(:func:`noise_floor`); the section reports it beside the error.
:class:`DecoderSection` is the report section; :func:`evaluate_decoder` writes the report.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import time
import typing as tp
from pathlib import Path

import numpy as np
import torch

from fspnet import __version__
from fspnet.data import SpectrumDataset, read_dataset
from fspnet.errors import DataError, FspnetError
from fspnet.evaluate._report import Report, write_csv
from runtools.io import write_json

if tp.TYPE_CHECKING:
    from fspnet.rundir import Run

__all__ = ["DecoderSection", "decode", "evaluate_decoder", "noise_floor", "time_decoder"]

log = logging.getLogger(__name__)

#: spectra decoded per batch (and in the batch the decoder is timed on)
DECODER_BATCH = 4096
#: fresh noise draws per spectrum that estimate the noise floor
NOISE_DRAWS = 16


@torch.no_grad()
def decode(run: Run, params: np.ndarray, device: str = "cpu") -> np.ndarray:
    """[N, P] physical parameters -> [N, C] scaled log spectra (the decoder's own output space).

    Raises:
        DataError: if ``run`` is not a decoder run or the parameters do not fit it.
    """
    if run.stage != "decoder":
        raise DataError(f"{run.path}: a {run.stage} run is not a decoder")
    if run.transforms.params is None:
        raise DataError(f"{run.path}: transforms.json has no parameter transform")
    p = np.asarray(params, dtype=np.float64)
    n_params = len(run.transforms.params.mean)
    if p.ndim != 2 or p.shape[1] != n_params:
        raise DataError(f"parameters have shape {p.shape}, but {run.path} expects [N, {n_params}]")
    run.network.to(device).eval()
    out = []
    for i in range(0, len(p), DECODER_BATCH):
        z = run.transforms.params(torch.from_numpy(np.ascontiguousarray(p[i : i + DECODER_BATCH])).to(device))
        out.append(run.network(z.float()).flatten(1).double().cpu().numpy())  # [B, C]
    return np.concatenate(out) if out else np.zeros((0, n_bins(run)))


def n_bins(run: Run) -> int:
    """Spectrum bins a decoder run outputs."""
    shape: tuple[int, ...] = tuple(run.network.output_shape)
    return int(math.prod(shape))


def time_decoder(run: Run, params: np.ndarray, device: str = "cpu", repeats: int = 3) -> float:
    """Seconds per spectrum of :func:`decode` plus the inverse spectrum transform (best of ``repeats``, after a warm-up)."""
    decode(run, params[: min(len(params), 8)], device)  # warm-up: allocations, kernels
    best = float("inf")
    for _ in range(repeats):
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        run.transforms.spectra.inverse(decode(run, params, device))  # physical spectra, as a user gets them
        best = min(best, time.perf_counter() - start)
    return best / max(len(params), 1)


def noise_floor(
    run: Run, ds: SpectrumDataset, rows: np.ndarray | None = None, draws: int = NOISE_DRAWS, seed: int = 0
) -> float | None:
    """The held-out MSE of an ideal decoder: the noise's variance in the decoder's space.

    Trained with the MSE on noisy spectra, a decoder tends to the mean of the scaled log noisy
    spectrum at the parameters; against held-out noisy spectra its error cannot go below the
    variance about that mean. Estimated from ``draws`` fresh draws of the noise of the spectra
    ``rows`` of ``ds`` (default all) at their true parameters, with the generator config ``ds``
    was made with; ``None`` unless ``ds`` holds Poisson-noise spectra from :mod:`fspnet.synthesize`.
    """
    from fspnet.evaluate._context import exposures
    from fspnet.synthesize import Synthesizer

    cfg = ds.source.get("config") if ds.source.get("generator") == "fspnet.synthesize" else None
    if ds.params is None or not isinstance(cfg, dict) or cfg.get("noise", "poisson") != "poisson" or draws < 2:
        return None
    try:
        syn = Synthesizer(cfg)
        t, _ = exposures(ds, syn.folder.detectors)
    except FspnetError as e:
        log.warning("no noise floor: the generator of the data cannot be rebuilt (%s)", e)
        return None
    params = np.asarray(ds.params, dtype=np.float64)
    if rows is not None:
        params, t = params[rows], t[rows]
    rng = np.random.default_rng(seed)
    scaled = [np.asarray(run.transforms.spectra(syn.simulate(params, t, rng)[0]), dtype=np.float64) for _ in range(draws)]
    return float(np.var(np.stack(scaled), axis=0, ddof=1).mean())


@dataclasses.dataclass
class DecoderSection:
    """Held-out reconstruction error and speed of a decoder (summary key ``decoder``).

    Args:
        n_spectra: spectra reconstructed (those with finite spectra and parameters).
        mse_transformed: mean over spectra and bins of the squared error in the scaled log
            space the decoder was trained in (comparable to its validation ``loss``).
        mse_physical: the same in physical units, (counts s^-1 keV^-1 detector^-1)^2.
        median_mse_transformed: median over spectra of each spectrum's mean squared error
            (scaled log space).
        s_per_spectrum: decoding time per spectrum, batched, including the transforms.
        timing_batch: spectra in the timed batch.
        device: torch device of the decoder.
        torch_threads: torch's CPU threads.
        n_weights: the decoder's weights.
        noise_floor: :func:`noise_floor`, the ``mse_transformed`` of an ideal decoder on these
            spectra (``None`` for spectra not made by :mod:`fspnet.synthesize` with noise).
        per_spectrum: [N] mean squared error of each spectrum (scaled log space); not serialised.
    """

    key: tp.ClassVar[str | None] = "decoder"

    n_spectra: int
    mse_transformed: float
    mse_physical: float
    median_mse_transformed: float
    s_per_spectrum: float
    timing_batch: int
    device: str
    torch_threads: int
    n_weights: int
    noise_floor: float | None = None
    per_spectrum: np.ndarray = dataclasses.field(repr=False, default_factory=lambda: np.zeros(0))

    @classmethod
    def compute(cls, run: Run, ds: SpectrumDataset, device: str = "cpu") -> DecoderSection:
        """Reconstruct every spectrum of ``ds`` from its true parameters and time the decoder.

        Raises:
            DataError: when ``ds`` has no parameters, or not the run's, or no finite row.
        """
        if ds.params is None:
            raise DataError("the data have no parameters; a decoder is evaluated on spectra with their true parameters")
        if run.param_names and list(ds.param_names) != list(run.param_names):
            raise DataError(f"the data's parameters {list(ds.param_names)} are not the decoder's {list(run.param_names)}")
        spectra = np.asarray(ds.spectra, dtype=np.float64)
        params = np.asarray(ds.params, dtype=np.float64)
        ok = np.isfinite(spectra).all(axis=1) & np.isfinite(params).all(axis=1)
        if not ok.any():
            raise DataError("no spectrum has finite values and parameters")
        if not ok.all():
            log.warning("%d of %d spectra hold NaN or inf and are left out", int((~ok).sum()), len(params))
        floor = noise_floor(run, ds, np.flatnonzero(ok))
        spectra, params = spectra[ok], params[ok]
        recon = decode(run, params, device)  # [N, C] scaled log
        target = np.asarray(run.transforms.spectra(spectra), dtype=np.float64)  # [N, C] scaled log
        per = ((recon - target) ** 2).mean(axis=1)  # [N]
        physical = np.asarray(run.transforms.spectra.inverse(recon), dtype=np.float64)
        k = int(min(len(params), DECODER_BATCH))
        s = time_decoder(run, params[:k], device)
        return cls(
            n_spectra=len(params), mse_transformed=float(per.mean()), mse_physical=float(((physical - spectra) ** 2).mean()),
            median_mse_transformed=float(np.median(per)), s_per_spectrum=s, timing_batch=k, device=str(device),
            torch_threads=int(torch.get_num_threads()), n_weights=sum(p.numel() for p in run.network.parameters()),
            noise_floor=floor, per_spectrum=per,
        )  # fmt: skip

    @property
    def us_per_spectrum(self) -> float:
        """:attr:`s_per_spectrum` in µs."""
        return self.s_per_spectrum * 1e6

    def to_dict(self) -> dict[str, tp.Any]:
        """The numbers (``per_spectrum`` left out), with ``us_per_spectrum``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "per_spectrum"}
        out["us_per_spectrum"] = self.us_per_spectrum
        return out

    def render(self, report: Report) -> None:
        """The "Reconstruction" section: the errors, the timing and the histogram of per-spectrum errors."""
        report.section("decoder", "Held-out reconstruction")
        report.table(
            ["what", "value"],
            [
                ["spectra", self.n_spectra],
                ["MSE, scaled log spectra (the training loss)", self.mse_transformed],
                ["median per-spectrum MSE, scaled log spectra", self.median_mse_transformed],
                [
                    "noise floor: an ideal decoder's MSE, scaled log spectra",
                    "–" if self.noise_floor is None else self.noise_floor,
                ],
                ["MSE, physical units ((counts s⁻¹ keV⁻¹ detector⁻¹)²)", self.mse_physical],
                ["µs per spectrum (batched, with the transforms)", self.us_per_spectrum],
                ["how timed", f"batch of {self.timing_batch} on {self.device}, {self.torch_threads} torch threads"],
                ["decoder weights", self.n_weights],
            ],
        )
        if len(self.per_spectrum):
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.hist(np.log10(np.clip(self.per_spectrum, 1e-12, None)), bins=30, color="#4477aa")
            ax.set_xlabel("log10 per-spectrum MSE (scaled log spectra)")
            ax.set_ylabel("spectra")
            fig.tight_layout()
            report.figure(fig, "decoder_mse", "Reconstruction error of each held-out spectrum")
            plt.close(fig)
        report.text("Timings are wall-clock on this machine; CPU times vary with the load of the machine.", note=True)


def evaluate_decoder(
    run: Run, data: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, device: str = "cpu"
) -> dict[str, tp.Any]:
    """Evaluate a decoder run on held-out spectra with their parameters and write the report.

    Files written into ``out`` (default ``<run>/evaluation``): ``report.html``,
    ``decoder_mse.png``, ``summary.json`` (``run``, ``stage``, ``data``, ``decoder``: the
    :class:`DecoderSection`) and ``summary.csv``.

    Raises:
        DataError: naming the data file when it is missing, has other bins or no parameters.

    Example:
        >>> s = evaluate_decoder(load_run("runs/decoder"), "heldout.h5")  # doctest: +SKIP
        >>> s["decoder"]["mse_transformed"], s["decoder"]["us_per_spectrum"]  # doctest: +SKIP
    """
    started = time.perf_counter()
    path = Path(data)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    ds = read_dataset(path)
    if ds.spectra.ndim != 2 or ds.spectra.shape[1] != n_bins(run):
        raise DataError(f"{path}: spectra have {ds.spectra.shape[1]} bins, but {run.path} outputs {n_bins(run)}")
    try:
        section = DecoderSection.compute(run, ds, device)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    out_dir = Path(out) if out is not None else run.path / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, tp.Any] = {
        "run": str(run.path), "stage": "decoder", "data": str(data), "fspnet_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "n_spectra": len(ds),
        "decoder": section.to_dict(),
    }  # fmt: skip
    report = Report(out_dir, f"FSP-Net decoder evaluation: {run.path.name} on {path.name}")
    report.section("overview", "Overview")
    report.table(["item", "value"], [["run", str(run.path)], ["data", str(data)], ["spectra", len(ds)], ["fspnet", __version__]])
    section.render(report)
    summary["elapsed_s"] = time.perf_counter() - started
    summary["report"] = str(report.write())
    write_json(out_dir / "summary.json", summary)
    write_csv(out_dir / "summary.csv", ["metric", "value"], [(f"decoder.{k}", v) for k, v in section.to_dict().items()])
    log.info("decoder evaluation written to %s in %.1f s", out_dir, summary["elapsed_s"])
    return summary
