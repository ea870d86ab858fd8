"""FSP-Net's channel grouping: PI channels summed into groups, then cut to the network's band.

FSP-Net groups NICER PI channels 0-1499 into groups of 2/3/4/5/6/2 channels with the size
changing at channels 20/248/600/1200/1494 (346 groups), keeps the groups whose centre lies in
0.3-10 keV (241 groups, 0.305-9.975 keV) and feeds the first 240 of them to the network (the
9.975 keV group, the one with the fewest counts, is dropped).
"""

from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np
import scipy.sparse

from fspnet.errors import ResponseError

__all__ = ["Grouping"]

_FSPNET_BREAKS = (0, 20, 248, 600, 1200, 1494, 1500)
_FSPNET_SIZES = (2, 3, 4, 5, 6, 2)


@dataclasses.dataclass(frozen=True, eq=False)
class Grouping:
    """Which channels make up each spectrum bin, and each bin's energy.

    Args:
        first: [G] first channel number of each kept group.
        size: [G] number of channels in each kept group (contiguous).
        energy_centres: [G] group centre, keV (mean of its channels' centres, as FSP-Net).
        energy_widths: [G] group width, keV (sum of its channels' widths).

    Example:
        >>> g = Grouping.fspnet()
        >>> len(g), float(g.energy_centres[0]), float(g.energy_widths[0])
        (240, 0.305, 0.03)
    """

    first: np.ndarray
    size: np.ndarray
    energy_centres: np.ndarray
    energy_widths: np.ndarray

    def __len__(self) -> int:
        return len(self.first)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grouping) and np.array_equal(self.first, other.first) and np.array_equal(self.size, other.size)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def fspnet(
        cls,
        band_kev: tuple[float, float] = (0.3, 10.0),
        n_bins: int | None = 240,
        channel_width_kev: float = 0.01,
    ) -> Grouping:
        """FSP-Net's NICER grouping (channel ``c`` spans ``[c, c + 1] * channel_width_kev``).

        Args:
            band_kev: keep groups whose centre lies in this closed band, keV.
            n_bins: keep only the first ``n_bins`` of those (240 for FSP-Net); ``None`` keeps all.
            channel_width_kev: nominal PI channel width (10 eV for NICER).
        """
        channels = np.arange(_FSPNET_BREAKS[-1])
        e_min = np.round(channels * channel_width_kev, 10)
        e_max = np.round((channels + 1) * channel_width_kev, 10)
        return cls.from_breaks(_FSPNET_BREAKS, _FSPNET_SIZES, channels, e_min, e_max, band_kev, n_bins)

    @classmethod
    def from_breaks(
        cls,
        breaks: tp.Sequence[int],
        sizes: tp.Sequence[int],
        channels: np.ndarray,
        e_min: np.ndarray,
        e_max: np.ndarray,
        band_kev: tuple[float, float] = (0.3, 10.0),
        n_bins: int | None = None,
    ) -> Grouping:
        """Group channels ``breaks[k]..breaks[k+1]-1`` in runs of ``sizes[k]`` and cut to a band.

        Args:
            breaks: [K+1] channel numbers where the group size changes (the last is exclusive).
            sizes: [K] channels per group in each segment; ``breaks[k+1] - breaks[k]`` must
                be a multiple of ``sizes[k]``.
            channels: [C] channel numbers with energies ``e_min``/``e_max`` (e.g. EBOUNDS).
            e_min: [C] lower channel energies, keV.
            e_max: [C] upper channel energies, keV.
            band_kev: keep groups whose centre lies in this closed band.
            n_bins: keep only the first ``n_bins`` groups in the band (``None``: all).

        Raises:
            ResponseError: if a segment is not a whole number of groups, a channel has no
                energy, or fewer than ``n_bins`` groups fall in the band.
        """
        if len(breaks) != len(sizes) + 1:
            raise ResponseError(f"grouping: {len(breaks)} breaks need {len(breaks) - 1} sizes, but got {len(sizes)}")
        lookup = {int(c): i for i, c in enumerate(np.asarray(channels))}
        centre = (np.asarray(e_min, np.float64) + np.asarray(e_max, np.float64)) / 2
        width = np.asarray(e_max, np.float64) - np.asarray(e_min, np.float64)
        first, size, centres, widths = [], [], [], []
        for lo, hi, n in zip(breaks[:-1], breaks[1:], sizes):
            if (hi - lo) % n:
                raise ResponseError(f"grouping: channels {lo}..{hi - 1} are not a whole number of groups of {n}")
            for c in range(lo, hi, n):
                try:
                    idx = [lookup[k] for k in range(c, c + n)]
                except KeyError as e:
                    raise ResponseError(f"grouping: channel {e.args[0]} has no energy bounds") from None
                first.append(c)
                size.append(n)
                centres.append(centre[idx].mean())
                widths.append(width[idx].sum())
        centres_a = np.round(np.asarray(centres), 10)
        keep = np.flatnonzero((centres_a >= band_kev[0]) & (centres_a <= band_kev[1]))
        if n_bins is not None:
            if len(keep) < n_bins:
                raise ResponseError(f"grouping: only {len(keep)} groups lie in {band_kev} keV, but {n_bins} were asked for")
            keep = keep[:n_bins]
        return cls(
            first=np.asarray(first, dtype=np.int64)[keep],
            size=np.asarray(size, dtype=np.int64)[keep],
            energy_centres=centres_a[keep],
            energy_widths=np.round(np.asarray(widths), 10)[keep],
        )

    @property
    def channel_span(self) -> tuple[int, int]:
        """First and last (inclusive) channel used by any group."""
        return int(self.first[0]), int((self.first + self.size).max() - 1)

    def matrix(self, channels: np.ndarray) -> scipy.sparse.csr_matrix:
        """[C, G] 0/1 matrix summing the columns ``channels`` (channel numbers) into groups.

        Raises:
            ResponseError: if a channel of a group is not among ``channels``.
        """
        channels = np.asarray(channels)
        index = {int(c): i for i, c in enumerate(channels)}
        rows, cols = [], []
        for g, (c0, n) in enumerate(zip(self.first, self.size)):
            for c in range(int(c0), int(c0 + n)):
                if c not in index:
                    lo, hi = (int(channels.min()), int(channels.max())) if channels.size else (0, -1)
                    raise ResponseError(
                        f"grouping: group {g} needs channel {c}, but the data has channels {lo}..{hi} ({channels.size})"
                    )
                rows.append(index[c])
                cols.append(g)
        return scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(channels), len(self)))

    def apply(self, values: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """Sum ``values`` [..., C] over the channels of each group -> [..., G]."""
        values = np.asarray(values, dtype=np.float64)
        return np.asarray(values @ self.matrix(channels))

    def to_dict(self) -> dict[str, tp.Any]:
        """A JSON-able description (for dataset provenance)."""
        return {
            "first_channel": self.first.tolist(),
            "n_channels": self.size.tolist(),
            "energy_kev": [float(self.energy_centres[0]), float(self.energy_centres[-1])],
        }
