"""Folding: model photon flux per energy bin -> FSP-Net spectrum bins, as one precomputed matrix.

Every fixed step is multiplied into a single matrix when the :class:`Folder` is built:

1. rebin the model grid onto the response's photon energy bins, assuming the photon flux
   density is constant within each model bin (flux conserving; XSPEC does the same when its
   ``energies`` grid differs from the response's);
2. multiply by the ARF (cm^2) and the RMF, summed into the channel groups;
3. divide by the number of detectors and the group width in keV.

A batch of spectra is then one matrix product over the model bins that reach the response.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch

from fspnet.errors import ResponseError
from fspnet.response._grouping import Grouping
from fspnet.response._response import Response

__all__ = ["Folder", "rebin_matrix"]


def rebin_matrix(model_edges: np.ndarray, energ_lo: np.ndarray, energ_hi: np.ndarray) -> scipy.sparse.csr_matrix:
    """[M, E] sparse fraction of model bin ``m`` that falls in response bin ``e`` (flux conserving).

    Args:
        model_edges: [M+1] increasing model bin edges, keV.
        energ_lo: [E] lower edges of the response's photon energy bins, keV.
        energ_hi: [E] upper edges, keV.
    """
    a = np.asarray(model_edges, dtype=np.float64)
    width = np.diff(a)
    first = np.clip(np.searchsorted(a, energ_lo, side="right") - 1, 0, len(a) - 2)
    last = np.clip(np.searchsorted(a, energ_hi, side="left") - 1, 0, len(a) - 2)
    counts = last - first + 1
    cols = np.repeat(np.arange(len(energ_lo)), counts)  # response bin of each entry
    rows = np.concatenate([np.arange(i0, i1 + 1) for i0, i1 in zip(first, last)])  # model bin
    lo, hi = np.asarray(energ_lo)[cols], np.asarray(energ_hi)[cols]
    overlap = np.maximum(np.minimum(a[rows + 1], hi) - np.maximum(a[rows], lo), 0.0) / width[rows]
    return scipy.sparse.csr_matrix((overlap, (rows, cols)), shape=(len(a) - 1, len(energ_lo)))


class Folder:
    """Folds batches of model photon spectra through a response into FSP-Net's spectrum bins.

    Args:
        response: the instrument response; ``None`` uses :meth:`Response.nicer`.
        model_edges: [M+1] model energy grid edges, keV (e.g. ``fspnet.physics.energy_grid()``).
        grouping: channel grouping; ``None`` uses :meth:`Grouping.fspnet` (240 bins).
        detectors: number of detectors the spectrum is divided by (52 for NICER as FSP-Net).
        dtype: precision of the matrix product. ``torch.float32`` (default) scales each
            spectrum by its maximum first, so the result is exact to ~1e-6 relative at any
            normalisation; use ``torch.float64`` for fits that need smooth gradients.

    Attributes:
        energy_centres: [G] bin centres, keV.
        energy_widths: [G] bin widths, keV.

    Example:
        >>> from fspnet.physics import SourceModel, energy_grid  # doctest: +SKIP
        >>> edges = energy_grid()  # doctest: +SKIP
        >>> folder = Folder(Response.nicer(), edges)  # doctest: +SKIP
        >>> spectra = folder(SourceModel()(edges, params))  # [N, 240] counts/s/keV/det  # doctest: +SKIP
    """

    def __init__(
        self,
        response: Response | None = None,
        model_edges: np.ndarray | torch.Tensor | None = None,
        grouping: Grouping | None = None,
        detectors: float = 52,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if model_edges is None:
            from fspnet.physics import energy_grid

            model_edges = energy_grid()
        self.response = Response.nicer() if response is None else response
        self.grouping = Grouping.fspnet() if grouping is None else grouping
        if detectors <= 0:
            raise ResponseError(f"detectors must be positive, but got {detectors}")
        self.detectors = float(detectors)
        self.dtype = dtype
        edges = np.asarray(torch.as_tensor(model_edges, dtype=torch.float64).cpu().numpy())
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise ResponseError("model_edges must be a 1-D increasing array of at least 2 edges (keV)")
        self.model_edges = torch.as_tensor(edges)
        rsp = self.response.grouped(self.grouping)
        w = rebin_matrix(edges, rsp.energ_lo, rsp.energ_hi)  # [M, E]
        m = np.asarray(w @ rsp.effective_matrix())  # [M, G] cm^2 counts per photon
        used = np.flatnonzero(np.abs(m).sum(axis=1) > 0)
        if used.size == 0:
            raise ResponseError(
                f"model grid {edges[0]:g}-{edges[-1]:g} keV does not overlap the response "
                f"({rsp.energ_lo[0]:g}-{rsp.energ_hi[-1]:g} keV)"
            )
        self._lo, self._hi = int(used[0]), int(used[-1]) + 1
        self.energy_centres = self.grouping.energy_centres.copy()
        self.energy_widths = self.grouping.energy_widths.copy()
        self._counts_matrix = torch.as_tensor(m[self._lo : self._hi], dtype=torch.float64)  # [M', G]
        self._matrix = self._counts_matrix.to(dtype)
        self._scale = torch.as_tensor(1.0 / (self.detectors * self.energy_widths))  # [G]
        # Fraction of the model grid actually reaching the response: what is outside is not folded.
        self.model_range = (self._lo, self._hi)

    def __len__(self) -> int:
        return len(self.grouping)

    def counts_rate(self, flux: torch.Tensor) -> torch.Tensor:
        """Expected count rate per group, counts s^-1 (float64).

        Args:
            flux: [N, M] photon flux per model bin, photons cm^-2 s^-1; or [N, M'] for the
                bins of :attr:`model_range` only (what ``model(edges, params, bins=model_range)``
                returns).

        Returns:
            [N, G] counts s^-1 in each group (all detectors together).
        """
        flux = torch.as_tensor(flux)
        if flux.shape[-1] == self._hi - self._lo:
            x = flux  # [N, M'] already cut to model_range
        elif flux.shape[-1] != len(self.model_edges) - 1:
            raise ResponseError(
                f"flux has {flux.shape[-1]} model bins, but the folder was built for {len(self.model_edges) - 1} "
                f"(or {self._hi - self._lo}, the bins of model_range {self.model_range})"
            )
        else:
            x = flux[..., self._lo : self._hi]  # [N, M']
        if self.dtype == torch.float64:
            return x.to(torch.float64) @ self._counts_matrix
        # float32 product on spectra scaled to a maximum of 1 (no overflow/underflow at any norm).
        s = x.detach().abs().amax(dim=-1, keepdim=True).to(torch.float64)
        s = torch.where(s > 0, s, torch.ones_like(s))
        return ((x / s).to(self.dtype) @ self._matrix).to(torch.float64) * s

    def rate_to_spectrum(self, rate: torch.Tensor) -> torch.Tensor:
        """counts s^-1 per group -> counts s^-1 keV^-1 detector^-1."""
        return rate * self._scale.to(rate.dtype)

    def __call__(self, flux: torch.Tensor) -> torch.Tensor:
        """Fold ``flux`` [N, M] (photons cm^-2 s^-1 per model bin) -> [N, G] counts s^-1 keV^-1 detector^-1."""
        return self.rate_to_spectrum(self.counts_rate(flux))
