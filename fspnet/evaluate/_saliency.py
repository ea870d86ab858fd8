"""Saliency: which energies the networks look at.

- Autoencoder: ``|∂ loss / ∂ input|`` with ``loss = MSE(decoder(encoder(x)), x)`` in the
  networks' scaled spectrum space, averaged over spectra, then per energy band.
- Decoder: ``|∂ decoder(p) / ∂ p_j|`` per parameter ``j`` and energy bin (central differences
  of 0.01 in the parameters' z-score space), averaged over spectra.

:class:`SaliencySection` is the report section.
"""

from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np
import torch
from torch.nn import functional as F

from fspnet.evaluate._context import BAND_KEV, EvalContext
from fspnet.evaluate._report import Report

if tp.TYPE_CHECKING:
    from fspnet.rundir import Run

__all__ = ["SaliencySection", "autoencoder_saliency", "band_edges", "band_means", "decoder_saliency", "plot_saliency"]


def band_edges(n_bands: int = 10, band_kev: tuple[float, float] = BAND_KEV) -> np.ndarray:
    """[n_bands + 1] log-spaced band edges across ``band_kev``, keV."""
    return np.geomspace(band_kev[0], band_kev[1], n_bands + 1)


def band_means(values: np.ndarray, energy_kev: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Average ``values`` [..., C] over the bins whose centre lies in each band -> [..., B]."""
    idx = np.clip(np.searchsorted(edges, energy_kev, side="right") - 1, 0, len(edges) - 2)
    out = np.full(values.shape[:-1] + (len(edges) - 1,), np.nan)
    for b in range(len(edges) - 1):
        m = idx == b
        if np.any(m):
            out[..., b] = values[..., m].mean(axis=-1)
    return out


def autoencoder_saliency(run: Run, spectra: np.ndarray, device: str = "cpu") -> np.ndarray:
    """[C] mean ``|∂ MSE(decoder(encoder(x)), x) / ∂ x|`` over ``spectra`` [N, C] (physical units)."""
    assert run.decoder is not None
    enc, dec = run.network.to(device).eval(), run.decoder.to(device).eval()
    x = run.transforms.spectra(torch.as_tensor(np.asarray(spectra, dtype=np.float64), device=device)).float()
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=device)
    for i in range(0, len(x), 512):
        xb = x[i : i + 512].clone().requires_grad_(True)
        loss = F.mse_loss(dec(enc(xb).flatten(1)).flatten(1), xb, reduction="none").mean(dim=1).sum()
        (grad,) = torch.autograd.grad(loss, xb)
        total += grad.abs().double().sum(dim=0)
    return (total / max(len(x), 1)).cpu().numpy()


@torch.no_grad()
def decoder_saliency(run: Run, params: np.ndarray, device: str = "cpu", step: float = 1e-2) -> np.ndarray:
    """[P, C] mean ``|∂ decoder(p) / ∂ p_j|`` over ``params`` [N, P] (physical units), z-score space."""
    assert run.decoder is not None and run.transforms.params is not None
    dec = run.decoder.to(device).eval()
    z = run.transforms.params(torch.as_tensor(np.asarray(params, dtype=np.float64), device=device)).float()
    p = z.shape[1]
    out = []
    for j in range(p):
        e = torch.zeros(p, device=device)
        e[j] = step
        d = (dec(z + e).flatten(1) - dec(z - e).flatten(1)) / (2 * step)  # [N, C]
        out.append(d.abs().double().mean(dim=0))
    return torch.stack(out).cpu().numpy()


def plot_saliency(
    energy_kev: np.ndarray,
    example: np.ndarray,
    reconstruction: np.ndarray | None,
    ae: np.ndarray | None,
    dec: np.ndarray | None,
    param_names: tp.Sequence[str],
    edges: np.ndarray,
) -> tp.Any:
    """Left: a spectrum and its reconstruction over bands shaded by autoencoder saliency. Right: decoder saliency per parameter."""
    import matplotlib.pyplot as plt
    from matplotlib import cm

    fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.9), layout="constrained")
    ax = axes[0]
    if ae is not None:
        bands = band_means(ae, energy_kev, edges)
        top = np.nanmax(bands) if np.any(np.isfinite(bands)) else 1.0
        for b in range(len(edges) - 1):
            if np.isfinite(bands[b]):
                ax.axvspan(edges[b], edges[b + 1], color=cm.viridis(bands[b] / top), alpha=0.35, lw=0)
        sm = cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, top))
        fig.colorbar(sm, ax=ax, label="|∂loss/∂input| (band mean)")
    pos = example > 0
    ax.plot(energy_kev[pos], example[pos], ".", ms=2.5, color="k", label="spectrum")
    if reconstruction is not None:
        ax.plot(energy_kev, reconstruction, "-", color="C3", lw=1, label="decoder(encoder(x))")
    ax.set_xscale("log")
    if np.any(pos):
        ax.set_yscale("log")
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("counts s$^{-1}$ keV$^{-1}$ det$^{-1}$")
    ax.legend(fontsize=8)
    ax.set_title("autoencoder saliency per band", fontsize=9)
    ax = axes[1]
    if dec is not None:
        for j, name in enumerate(param_names):
            ax.plot(energy_kev, dec[j], "-", lw=1, label=name)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("energy (keV)")
    ax.set_ylabel("|∂ decoder output / ∂ parameter| (z-score)")
    ax.set_title("decoder saliency per parameter", fontsize=9)
    return fig


@dataclasses.dataclass
class SaliencySection:
    """Which energies the networks look at (summary key ``saliency``).

    Args:
        energy_kev: [C] bin centres.
        edges: [B + 1] band edges, keV.
        param_names: the P parameter names.
        n_spectra: spectra the saliency averages over.
        ae: [C] autoencoder saliency, ``None`` without a decoder.
        dec: [P, C] decoder saliency, ``None`` without a decoder or parameter transforms.
        example: [C] the spectrum drawn, and ``reconstruction`` [C], its decoder(encoder(x)).
    """

    key: tp.ClassVar[str | None] = "saliency"

    energy_kev: np.ndarray
    edges: np.ndarray
    param_names: list[str]
    n_spectra: int = 0
    ae: np.ndarray | None = None
    dec: np.ndarray | None = None
    example: np.ndarray | None = None
    reconstruction: np.ndarray | None = None

    @classmethod
    def compute(cls, c: EvalContext) -> SaliencySection:
        """Average over ``n_saliency`` spectra: the fitted sample when it is large enough, else the first ones."""
        opt, run, ds = c.options, c.run, c.ds
        rows = c.rows[: opt.n_saliency] if len(c.rows) >= opt.n_saliency else np.arange(min(c.n, opt.n_saliency))
        out = cls(np.asarray(ds.energy_centres, dtype=np.float64), band_edges(), list(c.param_names), len(rows))
        if run.decoder is None:
            return out
        out.ae = autoencoder_saliency(run, ds.spectra[rows], opt.device)
        if run.transforms.params is not None:
            out.dec = decoder_saliency(run, (c.true if c.true is not None else c.pred)[rows], opt.device)
        out.example = np.asarray(ds.spectra[rows[0]], dtype=np.float64)
        with torch.no_grad():
            x = run.transforms.spectra(torch.as_tensor(out.example[None])).float()
            dev = next(run.network.parameters()).device
            rec = run.decoder(run.network(x.to(dev)).flatten(1)).flatten(1).double().cpu()
            out.reconstruction = run.transforms.spectra.inverse(rec).numpy()[0]
        return out

    def to_dict(self) -> dict[str, tp.Any]:
        """Band edges, the autoencoder's band means and the decoder's per parameter (and band)."""
        e, b, dec = self.energy_kev, self.edges, self.dec
        return {
            "band_edges_kev": b.tolist(),
            "autoencoder_per_band": None if self.ae is None else band_means(self.ae, e, b).tolist(),
            "decoder_per_parameter": None if dec is None else {nm: float(dec[j].mean()) for j, nm in enumerate(self.param_names)},
            "decoder_per_parameter_band": None
            if dec is None
            else {nm: band_means(dec[j], e, b).tolist() for j, nm in enumerate(self.param_names)},
        }

    def render(self, report: Report) -> None:
        """The "Saliency" section: band table and figure."""
        report.section("saliency", "Saliency")
        if self.ae is None or self.example is None:
            report.text("The run carries no decoder (decoder.safetensors), so saliency cannot be computed.", note=True)
            return
        report.text(
            f"Autoencoder: mean |∂ MSE(decoder(encoder(x)), x) / ∂x| over {self.n_spectra} spectra in the networks' scaled "
            "space, averaged per log-spaced band and shaded over one spectrum and its reconstruction. Decoder: mean "
            "|∂ decoder(p) / ∂p_j| per bin (z-score units)."
        )
        edges = self.edges
        bands = band_means(self.ae, self.energy_kev, edges)
        dec_b = None if self.dec is None else band_means(self.dec, self.energy_kev, edges)
        header = ["band (keV)", "autoencoder", *(self.param_names if dec_b is not None else [])]
        rows = [
            [f"{edges[b]:.2f}–{edges[b + 1]:.2f}", bands[b], *([] if dec_b is None else list(dec_b[:, b]))]
            for b in range(len(edges) - 1)
        ]
        report.table(header, rows)
        fig = plot_saliency(self.energy_kev, self.example, self.reconstruction, self.ae, self.dec, self.param_names, edges)
        report.figure(fig, "saliency")
