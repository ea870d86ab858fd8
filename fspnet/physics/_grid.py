"""The model energy grid and per-grid caches."""

from __future__ import annotations

import hashlib
import typing as tp

import numpy as np
import torch

__all__ = ["energy_grid"]


def energy_grid(n_bins: int = 2000, low_kev: float = 0.002, high_kev: float = 200.0) -> torch.Tensor:
    """Log-spaced model energy bin edges, as XSPEC's ``energies low high n log``.

    The default, 0.002-200 keV in 2000 bins, is FSP-Net's XSPEC ``energies`` setting: wide
    enough that a disk as cold as 0.025 keV scattered up into 0.3-10 keV is included.

    Args:
        n_bins: number of bins E.
        low_kev: lower edge of the first bin, keV.
        high_kev: upper edge of the last bin, keV.

    Returns:
        float64 [E+1] edges in keV, ``low_kev * (high_kev / low_kev) ** (i / E)``.

    Example:
        >>> edges = energy_grid()
        >>> edges.shape, float(edges[0]), float(edges[-1])
        (torch.Size([2001]), 0.002, 200.0)
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"energy_grid: n_bins must be a positive integer, but got {n_bins!r}")
    if not 0 < low_kev < high_kev:
        raise ValueError(f"energy_grid: need 0 < low_kev < high_kev, but got low_kev={low_kev}, high_kev={high_kev}")
    edges = np.geomspace(low_kev, high_kev, int(n_bins) + 1)
    edges[0], edges[-1] = low_kev, high_kev
    return torch.from_numpy(edges)


class _GridCache:
    """Small LRU of derived arrays keyed by the exact values (and device) of an edge grid.

    Components precompute what depends only on the grid (cross-sections at the edges,
    logarithms, tails) once per grid; the key is a hash of the edge values so two equal
    grids share an entry and a changed grid never reuses a stale one.
    """

    def __init__(self, maxsize: int = 8) -> None:
        self.maxsize = maxsize
        self._data: dict[tuple[tp.Hashable, ...], tp.Any] = {}

    def get(self, edges: torch.Tensor, extra: tp.Hashable, build: tp.Callable[[], tp.Any]) -> tp.Any:
        key = (_edges_key(edges), str(edges.device), extra)
        if key in self._data:
            value = self._data.pop(key)
        else:
            value = build()
            while len(self._data) >= self.maxsize:
                self._data.pop(next(iter(self._data)))
        self._data[key] = value  # most recently used last
        return value


def _edges_key(edges: torch.Tensor) -> str:
    data = edges.detach().to("cpu", torch.float64).contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _log_step(edges: torch.Tensor) -> float | None:
    """The common ln(e[j+1]/e[j]) of a log-uniform grid (to 1e-9), else None."""
    steps = torch.diff(torch.log(edges.detach().to("cpu", torch.float64)))
    if steps.numel() == 0:
        return None
    step = float(steps.mean())
    if float((steps - step).abs().max()) <= 1e-9 * max(step, 1e-300):
        return step
    return None
