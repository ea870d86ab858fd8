"""The HDF5 dataset contract: spectra, optional parameters, uncertainties and names.

One file per dataset (see DESIGN.md). ``spectra`` float32 [N, C]; optional ``params``
float64 [N, P] in physical units, ``uncertainties`` [N, C] and ``names`` (utf-8) [N];
attributes ``energy_centres``, ``energy_widths`` (keV), ``param_names``, ``log_params``,
``units``, ``source`` and ``fspnet_version``. Nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import typing as tp
from pathlib import Path

import h5py
import numpy as np

from fspnet import __version__
from fspnet.errors import DataError
from runtools.io import atomic_path

__all__ = [
    "SpectrumDataset",
    "check_finite",
    "clear_dataset_cache",
    "nonfinite_rows",
    "read_dataset",
    "read_dataset_cached",
    "write_dataset",
]

_SHOW_ROWS = 5  # row indices quoted in an error message before "... (N rows)"


@dataclasses.dataclass
class SpectrumDataset:
    """A dataset held in memory as numpy arrays.

    Args:
        spectra: [N, C] spectra (counts s^-1 keV^-1 detector^-1 by default).
        energy_centres: [C] bin centres in keV.
        energy_widths: [C] bin widths in keV.
        params: [N, P] parameters in physical units, or ``None`` for real spectra.
        uncertainties: [N, C] one-sigma uncertainties of ``spectra``, or ``None``.
        names: [N] spectrum names, or ``None`` (rows are then named by index).
        param_names: [P] parameter names.
        log_params: indices of parameters that are log-scaled for training.
        units: free-form units, e.g. ``{"spectra": "counts/s/keV/det", "nh": "1e22 cm^-2"}``.
        source: what made the file (generator settings or the list of FITS files).
    """

    spectra: np.ndarray
    energy_centres: np.ndarray
    energy_widths: np.ndarray
    params: np.ndarray | None = None
    uncertainties: np.ndarray | None = None
    names: list[str] | None = None
    param_names: list[str] = dataclasses.field(default_factory=list)
    log_params: list[int] = dataclasses.field(default_factory=list)
    units: dict[str, str] = dataclasses.field(default_factory=dict)
    source: dict[str, tp.Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.spectra)

    def subset(self, index: np.ndarray | slice) -> SpectrumDataset:
        """Return the rows ``index`` as a new dataset sharing the attributes."""
        return dataclasses.replace(
            self,
            spectra=self.spectra[index],
            params=None if self.params is None else self.params[index],
            uncertainties=None if self.uncertainties is None else self.uncertainties[index],
            names=None if self.names is None else list(np.asarray(self.names, dtype=object)[index]),
        )


def write_dataset(path: str | os.PathLike[str], dataset: SpectrumDataset) -> None:
    """Write ``dataset`` to the HDF5 file ``path`` atomically.

    Raises:
        DataError: if array shapes disagree with each other.
    """
    _check(dataset, str(path))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("spectra", data=np.asarray(dataset.spectra, dtype=np.float32))
        if dataset.params is not None:
            f.create_dataset("params", data=np.asarray(dataset.params, dtype=np.float64))
        if dataset.uncertainties is not None:
            f.create_dataset("uncertainties", data=np.asarray(dataset.uncertainties, dtype=np.float32))
        if dataset.names is not None:
            f.create_dataset("names", data=np.asarray(dataset.names, dtype=object), dtype=h5py.string_dtype("utf-8"))
        f.attrs["energy_centres"] = np.asarray(dataset.energy_centres, dtype=np.float64)
        f.attrs["energy_widths"] = np.asarray(dataset.energy_widths, dtype=np.float64)
        f.attrs["param_names"] = json.dumps(list(dataset.param_names))
        f.attrs["log_params"] = json.dumps([int(i) for i in dataset.log_params])
        f.attrs["units"] = json.dumps(dataset.units)
        f.attrs["source"] = json.dumps(dataset.source, default=str)
        model = dataset.source.get("model")
        if isinstance(model, dict) and model.get("expression"):  # the forward model (fspnet.synthesize)
            f.attrs["model_expression"] = str(model["expression"])
            f.attrs["model_backend"] = str(model.get("backend", "native"))
        f.attrs["fspnet_version"] = __version__


def read_dataset(path: str | os.PathLike[str], *, allow_nonfinite: bool = False) -> SpectrumDataset:
    """Read an HDF5 dataset written by :func:`write_dataset` (or by hand to the contract).

    Args:
        path: the HDF5 file.
        allow_nonfinite: keep rows whose spectra, uncertainties or parameters hold NaN or inf
            (find them with :func:`nonfinite_rows`); by default such a file is refused.

    Raises:
        DataError: naming the file and the missing, malformed or non-finite entry (with the rows).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found")
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # noqa: BLE001  # h5py raises OSError, but a damaged file can surface others
        raise DataError(f"{path}: not a readable HDF5 file ({e})") from None
    try:
        ds = _read_open(f, path)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001  # truncated or damaged: h5py decodes lazily, any entry can fail
        raise DataError(f"{path}: damaged HDF5 dataset ({type(e).__name__}: {e})") from None
    finally:
        f.close()
    _check(ds, str(path), allow_nonfinite=allow_nonfinite)
    return ds


def _read_open(f: h5py.File, path: Path) -> SpectrumDataset:
    """Decode an open dataset file (the caller turns decoding failures into a DataError)."""
    if "spectra" not in f:
        raise DataError(f"{path}: missing dataset 'spectra' (expected float32 [N, C])")
    spectra = f["spectra"][()]
    n_bins = spectra.shape[-1]
    attrs = f.attrs
    centres = np.asarray(attrs.get("energy_centres", np.arange(n_bins, dtype=np.float64)))
    widths = np.asarray(attrs.get("energy_widths", np.ones(n_bins)))
    names = None
    if "names" in f:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["names"][()]]
    params = f["params"][()] if "params" in f else None
    ds = SpectrumDataset(
        spectra=spectra.astype(np.float32, copy=False),
        energy_centres=centres,
        energy_widths=widths,
        params=None if params is None else params.astype(np.float64, copy=False),
        uncertainties=f["uncertainties"][()] if "uncertainties" in f else None,
        names=names,
        param_names=_json_attr(attrs, "param_names", [], path),
        log_params=_json_attr(attrs, "log_params", [], path),
        units=_json_attr(attrs, "units", {}, path),
        source=_json_attr(attrs, "source", {}, path),
    )
    return ds


_CACHE: dict[tuple[str, int, int], SpectrumDataset] = {}
_CACHE_LOCK = threading.Lock()


def read_dataset_cached(path: str | os.PathLike[str]) -> SpectrumDataset:
    """Like :func:`read_dataset`, but each file is read once per process and then reused.

    Repeated training calls in one process (an hpo worker running trial after trial) share the
    arrays. The key is the resolved path with the file's size and modification time, so a
    file rewritten in place is read again. Callers must not modify the returned arrays.
    """
    p = Path(path).resolve()
    try:
        stat = p.stat()
    except OSError:
        return read_dataset(p)  # raises the usual "not found" DataError
    key = (str(p), stat.st_size, stat.st_mtime_ns)
    with _CACHE_LOCK:
        if key not in _CACHE:
            for old in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[old]  # a stale version of the same file
            _CACHE[key] = read_dataset(p)
        return _CACHE[key]


def clear_dataset_cache() -> None:
    """Forget every dataset read by :func:`read_dataset_cached`."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _json_attr(attrs: tp.Any, key: str, default: tp.Any, path: Path) -> tp.Any:
    if key not in attrs:
        return default
    value = attrs[key]
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        return value.tolist() if hasattr(value, "tolist") else value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise DataError(f"{path}: attribute {key!r} is not valid JSON: {value[:80]!r}") from None


def nonfinite_rows(dataset: SpectrumDataset) -> np.ndarray:
    """[N] bool: rows whose spectrum, uncertainties or parameters hold a NaN or an infinity."""
    bad = np.zeros(len(dataset.spectra), dtype=bool)
    for array in (dataset.spectra, dataset.uncertainties, dataset.params):
        if array is not None:
            bad |= _nonfinite(array)
    return bad


def check_finite(where: str, **arrays: tp.Any) -> None:
    """Raise a :class:`DataError` naming ``where``, each array and the rows that hold NaN or inf.

    Args:
        where: the file (or other source) the arrays came from.
        **arrays: ``name=[N, ...]`` arrays (``None`` is skipped).

    Raises:
        DataError: e.g. ``data.h5: non-finite values (NaN or inf) in spectra rows 3, 17 (2 of 100
            rows); remove those rows, or pass --skip-nonfinite to fspnet.predict``.

    Example:
        >>> check_finite("x.h5", spectra=np.ones((3, 2)))  # passes silently
    """
    parts = []
    for name, array in arrays.items():
        if array is None:
            continue
        rows = np.flatnonzero(_nonfinite(array))
        if rows.size:
            parts.append(f"{name} {_describe_rows(rows, len(array))}")
    if parts:
        raise DataError(
            f"{where}: non-finite values (NaN or inf) in {'; '.join(parts)}; remove those rows, "
            "or pass --skip-nonfinite to fspnet.predict to write them as NaN and flag them"
        )


def _nonfinite(array: tp.Any) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 0 or not np.issubdtype(a.dtype, np.number):
        return np.zeros(len(a) if a.ndim else 0, dtype=bool)
    return ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)


def _describe_rows(rows: np.ndarray, n: int) -> str:
    shown = ", ".join(str(int(i)) for i in rows[:_SHOW_ROWS])
    more = ", ..." if rows.size > _SHOW_ROWS else ""
    word = "row" if rows.size == 1 else "rows"
    return f"{word} {shown}{more} ({rows.size} of {n} rows)"


def _check(ds: SpectrumDataset, where: str, allow_nonfinite: bool = False) -> None:
    spectra = np.asarray(ds.spectra)
    if spectra.ndim != 2:
        raise DataError(f"{where}: 'spectra' must be 2-D [N, C], got shape {spectra.shape}")
    n, c = spectra.shape
    for key in ("energy_centres", "energy_widths"):
        if np.shape(getattr(ds, key)) != (c,):
            raise DataError(f"{where}: attribute {key!r} must have shape ({c},), got {np.shape(getattr(ds, key))}")
    if ds.uncertainties is not None and np.shape(ds.uncertainties) != (n, c):
        raise DataError(f"{where}: 'uncertainties' must have shape {(n, c)}, got {np.shape(ds.uncertainties)}")
    if ds.names is not None and len(ds.names) != n:
        raise DataError(f"{where}: 'names' has {len(ds.names)} entries for {n} spectra")
    if ds.params is not None:
        p = np.shape(ds.params)
        if len(p) != 2 or p[0] != n:
            raise DataError(f"{where}: 'params' must have shape ({n}, P), got {p}")
        if ds.param_names and len(ds.param_names) != p[1]:
            raise DataError(f"{where}: {len(ds.param_names)} param_names for {p[1]} parameter columns")
        bad = [i for i in ds.log_params if not 0 <= int(i) < p[1]]
        if bad:
            raise DataError(f"{where}: log_params {bad} out of range for {p[1]} parameters")
    if not allow_nonfinite:
        check_finite(where, spectra=spectra, uncertainties=ds.uncertainties, params=ds.params)
