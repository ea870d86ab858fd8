"""Optional reference backend: XSPEC's own model library through ``xspectrampoline``.

The one module that talks to ``xspectrampoline``: the table-generation scripts, the oracle
tests and the ``xspec`` model backend (:mod:`fspnet.physics._expression`) all go through it.
XSPEC (and so ``xspectrampoline``) is GPL-licensed: an optional extra (``pip install
fspnet[xspec]``), imported only when asked for; nothing from it is vendored here, only
numbers computed with it (the tables in ``fspnet/physics/data``, see its README).

Every XSPEC model is described by XSPEC's own ``model.dat`` (read by
:func:`xspec_components`) and called through its C interface by :func:`xspec_evaluate`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import logging
import os
import shlex
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "XspecComponentInfo",
    "XspecParamInfo",
    "xspec_abundance",
    "xspec_available",
    "xspec_components",
    "xspec_evaluate",
    "xspec_model",
    "xspec_version",
]

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


_SETTINGS: dict[str, str] = {}  # the abundance / cross-section tables the library holds now
_LOCK = threading.Lock()


def _set_table(setter: str, table: str, what: str) -> None:
    if _SETTINGS.get(setter) == table:
        return
    lib = _libraries().lib_xs_functions
    fn = getattr(lib, setter)
    fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    fn.restype = None
    ierr = ctypes.c_int(0)
    fn(table.encode("ascii"), ctypes.byref(ierr))
    if ierr.value != 0:
        raise ValueError(f"XSPEC: {what} table {table!r} was refused (ierr={ierr.value})")
    _SETTINGS[setter] = table


def _set_abundances(table: str) -> None:
    _set_table("FPSOLR", table, "abundance")


def _set_cross_sections(table: str) -> None:
    _set_table("FPXSCT", table, "cross-section")


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


# ----------------------------------------------------------------------------- any XSPEC model

_KINDS = {
    "add": "additive",
    "mul": "multiplicative",
    "con": "convolution",
    "mix": "mixing",
    "acn": "convolution",
    "amx": "mixing",
}


@dataclasses.dataclass(frozen=True)
class XspecParamInfo:
    """One parameter of an XSPEC model as ``model.dat`` declares it.

    Args:
        name: XSPEC's name, e.g. ``Tin``.
        unit: unit string (``""`` if dimensionless).
        default: XSPEC's default value.
        hard_min, soft_min, soft_max, hard_max: XSPEC's limits.
        frozen: XSPEC freezes it by default (negative delta, or a switch/scale parameter).
    """

    name: str
    unit: str
    default: float
    hard_min: float
    soft_min: float
    soft_max: float
    hard_max: float
    frozen: bool


@dataclasses.dataclass(frozen=True)
class XspecComponentInfo:
    """One XSPEC model component from ``model.dat``.

    Args:
        name: the name as ``model.dat`` spells it (``TBabs``); expressions match it without case.
        kind: ``additive``, ``multiplicative``, ``convolution`` or ``mixing``.
        function: the library function ``model.dat`` names (``C_tbabs``, ``xsdskb``).
        params: the parameters in XSPEC order, without the ``norm`` of additive models.
    """

    name: str
    kind: str
    function: str
    params: tuple[XspecParamInfo, ...]


def _model_dat() -> Path:
    import xspectrampoline_helpers as helpers  # type: ignore[import-untyped]

    return Path(helpers._headas_path) / "spectral" / "manager" / "model.dat"


def _parse_param(line: str) -> XspecParamInfo:
    tok = shlex.split(line, posix=True)
    name = tok[0]
    if name.startswith("$"):  # switch: "$name [unit] value"
        v = float(tok[-1]) if len(tok) > 1 else 0.0
        return XspecParamInfo(name[1:], "", v, v, v, v, v, True)
    scale = name.startswith("*")  # scale parameter: "*name unit value"
    name = name.lstrip("*")
    unit = tok[1].strip() if len(tok) > 1 else ""
    vals = [float(t) for t in tok[2:8]]
    if scale or len(vals) < 6:
        v = vals[0] if vals else 0.0
        return XspecParamInfo(name, unit, v, v, v, v, v, True)
    default, hmin, smin, smax, hmax, delta = vals
    return XspecParamInfo(name, unit, default, hmin, smin, smax, hmax, delta < 0)


@functools.cache
def xspec_components() -> dict[str, XspecComponentInfo]:
    """Every model of XSPEC's ``model.dat``, keyed by lower-case name.

    Raises:
        ImportError: when ``xspectrampoline`` is not installed.
    """
    lines = _model_dat().read_text(encoding="utf-8", errors="replace").splitlines()
    out: dict[str, XspecComponentInfo] = {}
    i = 0
    while i < len(lines):
        tok = lines[i].split()
        i += 1
        if len(tok) < 6 or tok[5] not in _KINDS or not tok[1].isdigit():
            continue
        npar = int(tok[1])
        params: list[XspecParamInfo] = []
        while len(params) < npar and i < len(lines):
            if lines[i].strip():
                params.append(_parse_param(lines[i]))
            i += 1
        out.setdefault(tok[0].lower(), XspecComponentInfo(tok[0], _KINDS[tok[5]], tok[4], tuple(params)))
    return out


@functools.cache
def _callable(info: XspecComponentInfo) -> tuple[Any, bool]:
    """(function, is_fortran_single_precision) for one component."""
    libs = _libraries()
    lib = libs.lib_xs_functions
    f = info.function
    candidates = [f] if f.startswith("C_") else []
    if f.startswith("c_"):
        candidates.append("C_" + f[2:])
    candidates += [f"C_{info.name}", f"C_{info.name.lower()}"]
    for sym in candidates:
        if hasattr(lib, sym):
            return libs.get_model(sym, interface="c"), False
    if not f.startswith(("C_", "c_", "F_")) and hasattr(lib, f + "_"):
        return libs.get_model(f + "_", interface="fortan"), True  # xspectrampoline's spelling
    raise ValueError(f"XSPEC: model {info.name!r} (function {f}) has no callable symbol in the library")


def xspec_evaluate(
    info: XspecComponentInfo,
    edges_kev: np.ndarray,
    params: np.ndarray,
    flux_in: np.ndarray | None = None,
    abundances: str = "wilm",
    cross_sections: str = "vern",
) -> np.ndarray:
    """Evaluate any XSPEC component (norm 1) on one grid, with XSPEC's library.

    Args:
        info: the component (from :func:`xspec_components`).
        edges_kev: float64 bin edges [E+1], keV, increasing.
        params: its parameters [len(info.params)] in XSPEC order (no norm).
        flux_in: the photon flux per bin [E] a convolution acts on.
        abundances: XSPEC ``abund`` table.
        cross_sections: XSPEC ``xsect`` table.

    Returns:
        float64 [E]: photons cm^-2 s^-1 per bin (additive), the factor per bin
        (multiplicative) or the convolved flux (convolution).
    """
    fn, single = _callable(info)
    n = len(edges_kev) - 1
    with _LOCK:  # the tables are global library state
        _set_abundances(abundances)
        _set_cross_sections(cross_sections)
        if single:
            out32 = np.zeros(n, np.float32) if flux_in is None else np.array(flux_in, dtype=np.float32)
            fn(
                np.ascontiguousarray(edges_kev, np.float32),
                np.ascontiguousarray(params, np.float32),
                out32,
                np.zeros(n, np.float32),
            )
            return out32.astype(np.float64)
        out = np.zeros(n) if flux_in is None else np.array(flux_in, dtype=np.float64, copy=True)
        fn(np.ascontiguousarray(edges_kev, np.float64), np.ascontiguousarray(params, np.float64), out, np.zeros(n))
    return out
