"""Readers for OGIP spectral files: RMF (``MATRIX`` + ``EBOUNDS``), ARF (``SPECRESP``) and PHA.

The formats are those of OGIP memos CAL/GEN/92-002 (responses) and OGIP/92-007 (spectra).
Everything is read with :mod:`astropy.io.fits` into plain numpy arrays; nothing here knows
about FSP-Net's grouping or units.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import typing as tp
from pathlib import Path

import numpy as np
import scipy.sparse
from astropy.io import fits

from fspnet.errors import ResponseError

__all__ = ["Arf", "Pha", "Rmf", "read_arf", "read_pha", "read_rmf"]


@dataclasses.dataclass
class Rmf:
    """A redistribution matrix: the probability that a photon of energy bin ``i`` lands in channel ``j``.

    Args:
        energ_lo: [E] lower edges of the photon energy bins, keV.
        energ_hi: [E] upper edges of the photon energy bins, keV.
        matrix: [E, C] sparse redistribution matrix (CSR). For an RSP file it includes the
            effective area (cm^2).
        channels: [C] channel numbers (e.g. PI 0..1500), column ``j`` is ``channels[j]``.
        e_min: [C] nominal lower energy of each channel, keV (``EBOUNDS``).
        e_max: [C] nominal upper energy of each channel, keV.
        includes_area: True when the matrix already contains the effective area (``RSP``).
        path: the file the matrix was read from, if any.
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    matrix: scipy.sparse.csr_matrix
    channels: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    includes_area: bool = False
    path: str = ""


@dataclasses.dataclass
class Arf:
    """An ancillary response: effective area per photon energy bin.

    Args:
        energ_lo: [E] lower energy edges, keV.
        energ_hi: [E] upper energy edges, keV.
        specresp: [E] effective area, cm^2.
        path: the file the ARF was read from, if any.
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray
    path: str = ""


@dataclasses.dataclass
class Pha:
    """A type-I OGIP spectrum.

    Args:
        channels: [C] channel numbers.
        counts: [C] counts per channel (``RATE * EXPOSURE`` when the file stores rates).
        exposure: exposure time, s.
        backscal: background scaling (area) factor, scalar or [C].
        areascal: area scaling factor, scalar or [C].
        quality: [C] OGIP quality flags (0 good); zeros when the file has none.
        stat_err: [C] statistical errors in counts, or ``None`` (Poisson errors).
        poisserr: whether Poisson errors are to be assumed.
        respfile: ``RESPFILE`` keyword ('' when absent or 'none').
        ancrfile: ``ANCRFILE`` keyword.
        backfile: ``BACKFILE`` keyword.
        detchans: ``DETCHANS`` keyword (number of possible channels), or ``C``.
        is_rate: True when the file stored ``RATE`` rather than ``COUNTS``.
        path: the file the spectrum was read from.
        header: selected header keywords (str -> value) for provenance.
    """

    channels: np.ndarray
    counts: np.ndarray
    exposure: float
    backscal: float | np.ndarray = 1.0
    areascal: float | np.ndarray = 1.0
    quality: np.ndarray | None = None
    stat_err: np.ndarray | None = None
    poisserr: bool = True
    respfile: str = ""
    ancrfile: str = ""
    backfile: str = ""
    detchans: int = 0
    is_rate: bool = False
    path: str = ""
    header: dict[str, tp.Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.quality is None:
            self.quality = np.zeros(len(self.channels), dtype=np.int16)
        if not self.detchans:
            self.detchans = len(self.channels)


def _open(path: str | os.PathLike[str], kind: str) -> fits.HDUList:
    path = Path(path)
    if not path.is_file():
        raise ResponseError(f"{path}: {kind} file not found")
    try:
        return fits.open(path, memmap=False)
    except Exception as e:  # noqa: BLE001  # astropy raises OSError, ValueError, TypeError, ... on damaged files
        raise ResponseError(f"{path}: not a readable FITS file ({_why(e)})") from None


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@contextlib.contextmanager
def _reading(path: str | os.PathLike[str], kind: str) -> tp.Iterator[None]:
    """Turn any failure while decoding ``path`` into a :class:`ResponseError` that names it.

    astropy reads headers and table data lazily, so a truncated or damaged file can fail
    anywhere (``hdu.data``, a column, a keyword) with whatever exception the decoder raises.
    """
    try:
        yield
    except ResponseError:
        raise
    except Exception as e:  # noqa: BLE001  # whatever the decoder raised, the file is at fault
        raise ResponseError(f"{path}: damaged or truncated {kind} file ({_why(e)})") from None


def _keyword_number(
    header: fits.Header, key: str, path: str | os.PathLike[str], default: float | None = None, integer: bool = False
) -> float:
    """A numeric header keyword, or a :class:`ResponseError` naming the file, the key and the value."""
    value = header.get(key, default)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value.strip())
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ResponseError(f"{path}: {key} must be a number, but got {value!r} ({type(value).__name__})")
    number = float(value)
    if not np.isfinite(number):
        raise ResponseError(f"{path}: {key} must be a finite number, but got {value!r}")
    if integer and number != int(number):
        raise ResponseError(f"{path}: {key} must be an integer, but got {value!r}")
    return number


def _find_hdu(hdul: fits.HDUList, names: tp.Sequence[str], path: str | os.PathLike[str], kind: str) -> tp.Any:
    for name in names:
        if name in hdul:
            return hdul[name]
    for hdu in hdul[1:]:  # fall back on HDUCLAS keywords when EXTNAME is non-standard
        if hdu.header.get("HDUCLAS2", "").strip() in names or hdu.header.get("HDUCLAS1", "").strip() in names:
            return hdu
    present = [h.name for h in hdul]
    raise ResponseError(f"{path}: no {kind} extension (looked for {', '.join(names)}; file has {present})")


def _tlmin(header: fits.Header, column: str, columns: fits.ColDefs, default: int, path: str | os.PathLike[str] = "") -> int:
    index = columns.names.index(column) + 1
    return int(_keyword_number(header, f"TLMIN{index}", path, default, integer=True))


def _keyword_file(value: tp.Any) -> str:
    text = "" if value is None else str(value).strip()
    return "" if text.lower() in ("", "none", "null") else text


def read_rmf(path: str | os.PathLike[str]) -> Rmf:
    """Read an OGIP RMF (or RSP) file.

    Handles variable-length ``F_CHAN``/``N_CHAN``/``MATRIX`` rows with several channel groups
    per energy, the ``TLMIN`` offset of ``F_CHAN`` (first legal channel; 1 when absent, as
    OGIP specifies) and the ``EBOUNDS`` channel energies.

    Args:
        path: the RMF/RSP file.

    Returns:
        The :class:`Rmf`.

    Raises:
        ResponseError: naming the file and what is missing or inconsistent.

    Example:
        >>> rmf = read_rmf("nicer.rmf")  # doctest: +SKIP
        >>> rmf.matrix.shape  # doctest: +SKIP
        (3451, 1501)
    """
    with _open(path, "RMF") as hdul, _reading(path, "RMF"):
        mhdu = _find_hdu(hdul, ("MATRIX", "SPECRESP MATRIX", "RSP_MATRIX"), path, "MATRIX")
        ehdu = _find_hdu(hdul, ("EBOUNDS",), path, "EBOUNDS")
        data, header = mhdu.data, mhdu.header
        need = ["ENERG_LO", "ENERG_HI", "N_GRP", "F_CHAN", "N_CHAN", "MATRIX"]
        missing = [c for c in need if c not in mhdu.columns.names]
        if missing:
            raise ResponseError(f"{path}: MATRIX extension lacks column(s) {missing}")
        e_data = ehdu.data
        for c in ("CHANNEL", "E_MIN", "E_MAX"):
            if c not in ehdu.columns.names:
                raise ResponseError(f"{path}: EBOUNDS extension lacks column {c!r}")
        channels = np.asarray(e_data["CHANNEL"], dtype=np.int64)
        e_min = np.asarray(e_data["E_MIN"], dtype=np.float64)
        e_max = np.asarray(e_data["E_MAX"], dtype=np.float64)
        n_chan_total = int(_keyword_number(header, "DETCHANS", path, len(channels), integer=True))
        if len(channels) != n_chan_total:
            raise ResponseError(f"{path}: EBOUNDS has {len(channels)} rows but DETCHANS = {n_chan_total}")
        first_channel = _tlmin(header, "F_CHAN", mhdu.columns, int(channels.min()) if len(channels) else 1, path)
        energ_lo = np.asarray(data["ENERG_LO"], dtype=np.float64)
        energ_hi = np.asarray(data["ENERG_HI"], dtype=np.float64)
        n_grp = np.asarray(data["N_GRP"], dtype=np.int64)
        f_chan, n_chan, values = data["F_CHAN"], data["N_CHAN"], data["MATRIX"]
        rows, cols, vals = [], [], []
        for i in range(len(energ_lo)):
            g = int(n_grp[i])
            if g == 0:
                continue
            fc = np.atleast_1d(np.asarray(f_chan[i], dtype=np.int64))[:g]
            nc = np.atleast_1d(np.asarray(n_chan[i], dtype=np.int64))[:g]
            v = np.atleast_1d(np.asarray(values[i], dtype=np.float64))
            if len(fc) < g or len(nc) < g or v.size < nc.sum():
                raise ResponseError(
                    f"{path}: MATRIX row {i} declares {g} group(s) / {int(nc.sum())} elements "
                    f"but holds {len(fc)} F_CHAN, {len(nc)} N_CHAN and {v.size} MATRIX values"
                )
            start = fc - first_channel
            col = np.concatenate([np.arange(s, s + n) for s, n in zip(start, nc)])
            if col.size and (col.min() < 0 or col.max() >= n_chan_total):
                raise ResponseError(
                    f"{path}: MATRIX row {i} addresses channel {int(col.max() + first_channel)} outside "
                    f"{first_channel}..{first_channel + n_chan_total - 1} (TLMIN/DETCHANS)"
                )
            rows.append(np.full(col.size, i, dtype=np.int64))
            cols.append(col)
            vals.append(v[: col.size])
        hduclas3 = str(header.get("HDUCLAS3", "")).strip().upper()
        includes_area = hduclas3 in ("FULL", "DETECTOR") or mhdu.name == "SPECRESP MATRIX"
    if not rows:
        raise ResponseError(f"{path}: MATRIX extension has no non-zero elements")
    matrix = scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(energ_lo), n_chan_total),
    )
    # EBOUNDS rows may not be sorted by channel; columns follow TLMIN order.
    order = np.argsort(channels)
    return Rmf(
        energ_lo=energ_lo,
        energ_hi=energ_hi,
        matrix=matrix,
        channels=channels[order],
        e_min=e_min[order],
        e_max=e_max[order],
        includes_area=includes_area,
        path=str(path),
    )


def read_arf(path: str | os.PathLike[str]) -> Arf:
    """Read an OGIP ARF (``SPECRESP`` extension).

    Raises:
        ResponseError: naming the file and what is missing.
    """
    with _open(path, "ARF") as hdul, _reading(path, "ARF"):
        hdu = _find_hdu(hdul, ("SPECRESP",), path, "SPECRESP")
        for c in ("ENERG_LO", "ENERG_HI", "SPECRESP"):
            if c not in hdu.columns.names:
                raise ResponseError(f"{path}: SPECRESP extension lacks column {c!r}")
        arf = Arf(
            energ_lo=np.asarray(hdu.data["ENERG_LO"], dtype=np.float64),
            energ_hi=np.asarray(hdu.data["ENERG_HI"], dtype=np.float64),
            specresp=np.asarray(hdu.data["SPECRESP"], dtype=np.float64),
            path=str(path),
        )
    if not np.all(np.isfinite(arf.specresp)):
        raise ResponseError(f"{path}: SPECRESP holds non-finite values")
    return arf


def _scalar_or_column(hdu: tp.Any, key: str, default: float, path: str | os.PathLike[str]) -> float | np.ndarray:
    if key in hdu.columns.names:
        try:
            return np.asarray(hdu.data[key], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ResponseError(f"{path}: {key} column is not numeric ({_why(e)})") from None
    return _keyword_number(hdu.header, key, path, default)


def read_pha(path: str | os.PathLike[str]) -> Pha:
    """Read a type-I OGIP PHA spectrum (``SPECTRUM`` extension).

    ``COUNTS`` are used as they are; ``RATE`` is converted to counts with ``EXPOSURE``.
    ``BACKSCAL``/``AREASCAL``/``QUALITY`` may be keywords or columns.

    Args:
        path: the PHA file.

    Returns:
        The :class:`Pha`.

    Raises:
        ResponseError: naming the file and the reason (no ``SPECTRUM`` extension, no
            ``COUNTS``/``RATE`` column, missing or non-positive ``EXPOSURE``, type-II file).
    """
    with _open(path, "PHA") as hdul, _reading(path, "PHA"):
        hdu = _find_hdu(hdul, ("SPECTRUM",), path, "SPECTRUM")
        header, names = hdu.header, hdu.columns.names
        if "EXPOSURE" not in header:
            raise ResponseError(f"{path}: missing EXPOSURE keyword in the SPECTRUM extension")
        exposure = _keyword_number(header, "EXPOSURE", path)
        if exposure <= 0:
            raise ResponseError(f"{path}: EXPOSURE must be a positive number, but got {exposure}")
        if "COUNTS" in names:
            counts = np.asarray(hdu.data["COUNTS"], dtype=np.float64)
            is_rate = False
        elif "RATE" in names:
            counts = np.asarray(hdu.data["RATE"], dtype=np.float64) * exposure
            is_rate = True
        else:
            raise ResponseError(f"{path}: SPECTRUM extension has neither a COUNTS nor a RATE column")
        if counts.ndim != 1:
            raise ResponseError(f"{path}: type-II PHA files (one spectrum per row) are not supported")
        if "CHANNEL" in names:
            channels = np.asarray(hdu.data["CHANNEL"], dtype=np.int64)
        else:
            first = _tlmin(header, names[0], hdu.columns, 1, path)
            channels = np.arange(first, first + len(counts))
        quality = np.asarray(hdu.data["QUALITY"], dtype=np.int16) if "QUALITY" in names else None
        if quality is None and "QUALITY" in header:
            quality = np.full(len(counts), int(_keyword_number(header, "QUALITY", path, integer=True)), dtype=np.int16)
        stat_err = None
        if "STAT_ERR" in names:
            stat_err = np.asarray(hdu.data["STAT_ERR"], dtype=np.float64) * (exposure if is_rate else 1.0)
        keep = ("TELESCOP", "INSTRUME", "OBJECT", "OBS_ID", "DATE-OBS", "HDUCLAS2", "CHANTYPE")
        return Pha(
            channels=channels,
            counts=counts,
            exposure=exposure,
            backscal=_scalar_or_column(hdu, "BACKSCAL", 1.0, path),
            areascal=_scalar_or_column(hdu, "AREASCAL", 1.0, path),
            quality=quality,
            stat_err=stat_err,
            poisserr=bool(header.get("POISSERR", stat_err is None)),
            # fakeit records the response it used in FKRSP001 when RESPFILE is blank.
            respfile=_keyword_file(header.get("RESPFILE")) or _keyword_file(header.get("FKRSP001")),
            ancrfile=_keyword_file(header.get("ANCRFILE")),
            backfile=_keyword_file(header.get("BACKFILE")),
            detchans=int(_keyword_number(header, "DETCHANS", path, len(counts), integer=True)),
            is_rate=is_rate,
            path=str(path),
            header={k: header[k] for k in keep if k in header},
        )
