"""Optional reference backend: XSPEC's own model library through ``xspectrampoline``.

Used by the table-generation scripts and the oracle tests, never by the forward model.
XSPEC (and so ``xspectrampoline``) is GPL-licensed; nothing from it is vendored here, only
numbers computed with it (the tables in ``fspnet/physics/data``, see its README).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from typing import Any

import numpy as np

__all__ = ["xspec_abundance", "xspec_available", "xspec_model", "xspec_version"]

_log = logging.getLogger(__name__)

# XSPEC's C-interface names of the models this package reproduces or uses as references.
_SYMBOLS = {
    "tbabs": "C_tbabs",
    "tbvarabs": "C_tbvabs",
    "diskbb": "C_diskbb",
    "simpl": "C_simpl",
    "nthcomp": "C_nthcomp",
    "cutoffpl": "C_cutoffpl",
    "powerlaw": "C_powerLaw",
}


def xspec_available() -> bool:
    """Whether ``xspectrampoline`` (XSPEC's model library) can be imported."""
    try:
        _libraries()
    except Exception:  # noqa: BLE001 - any load failure means "not available"
        return False
    return True


@functools.cache
def _libraries() -> Any:
    # The library prints banners to stdout when it loads; that is harmless.
    import xspectrampoline

    return xspectrampoline.get_libraries()


@functools.cache
def _set_abundances(table: str) -> None:
    lib = _libraries().lib_xs_functions
    lib.FPSOLR.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    lib.FPSOLR.restype = None
    ierr = ctypes.c_int(0)
    lib.FPSOLR(table.encode("ascii"), ctypes.byref(ierr))
    if ierr.value != 0:
        raise ValueError(f"XSPEC: abundance table {table!r} was refused (ierr={ierr.value})")


def xspec_abundance(element: str, abundances: str = "wilm") -> float:
    """Solar abundance (by number, relative to H) of ``element`` in XSPEC's table."""
    lib = _libraries().lib_xs_functions
    _set_abundances(abundances)
    lib.FGABND.argtypes = [ctypes.c_char_p]
    lib.FGABND.restype = ctypes.c_float
    return float(lib.FGABND(element.encode("ascii")))


def xspec_version() -> str:
    """The XSPEC model-library version bundled by ``xspectrampoline`` (e.g. ``"6.35.1"``)."""
    import xspectrampoline

    root = os.path.dirname(xspectrampoline.__file__)
    names = [n for n in os.listdir(root) if n.startswith("LibXSPEC_v")]
    lib = names[0].removeprefix("LibXSPEC_v").replace("_", ".") if names else "unknown"
    try:
        from importlib.metadata import version

        return f"{lib} (xspectrampoline {version('xspectrampoline')})"
    except Exception:  # noqa: BLE001
        return lib


def xspec_model(
    name: str,
    edges_kev: np.ndarray,
    params: list[float] | np.ndarray,
    flux_in: np.ndarray | None = None,
    abundances: str = "wilm",
) -> np.ndarray:
    """Evaluate one XSPEC model on one energy grid.

    Args:
        name: one of ``tbabs``, ``tbvarabs``, ``diskbb``, ``simpl``, ``nthcomp``, ``cutoffpl``, ``powerlaw``.
        edges_kev: bin edges [E+1] in keV, increasing.
        params: the model's parameters in XSPEC order (no norm for additive models: XSPEC's
            C interface returns the norm-1 spectrum).
        flux_in: for convolution models (``simpl``) the input photon flux per bin [E].
        abundances: solar abundance table (``wilm`` for tbabs as in Wilms et al. 2000).

    Returns:
        float64 [E]: photons cm^-2 s^-1 per bin for additive models, the transmission for
        multiplicative ones, the convolved flux for convolution models.
    """
    if name not in _SYMBOLS:
        raise ValueError(f"xspec_model: unknown model {name!r}; choose one of {sorted(_SYMBOLS)}")
    libs = _libraries()
    _set_abundances(abundances)
    edges = np.ascontiguousarray(edges_kev, dtype=np.float64)
    n = len(edges) - 1
    out = np.zeros(n) if flux_in is None else np.array(flux_in, dtype=np.float64, copy=True)
    if out.shape != (n,):
        raise ValueError(f"xspec_model: flux_in has shape {out.shape}, expected ({n},)")
    err = np.zeros(n)
    fn = libs.get_model(_SYMBOLS[name])
    fn(edges, np.ascontiguousarray(params, dtype=np.float64), out, err)
    return out
