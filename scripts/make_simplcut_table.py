"""Regenerate ``fspnet/physics/data/nthcomp_rollover.npz`` from XSPEC's own ``nthcomp``.

SimplCutX scatters seed photons into a power law E^-Gamma multiplied by a rollover c(E)
that carries the electron temperature kT_e. No public implementation of simplcut's
rollover exists, so fspnet takes its shape from thermal Comptonisation itself: c is the
ratio of XSPEC ``nthcomp`` (Zdziarski et al. 1996; Zycki et al. 1999) to a pure power
law of the same photon index, for seed photons far below the band (kT_bb = 1 eV) and
kT_e = 100 keV, normalised to 1 at 0.05-0.2 keV (5e-4 - 2e-3 kT_e):

    c(x = E / kT_e; Gamma) = nthcomp_bin(E) / int_bin E^-Gamma dE / A(Gamma)

tabulated on a grid of Gamma (1.05-5, step 0.05) and ln x (1e-3 - 60). See
``docs/physics.md`` for how good the approximation is and what it does in 0.3-10 keV.
XSPEC's model library comes from ``xspectrampoline``; it is needed only for this script.

Usage:
    python scripts/make_simplcut_table.py [--out fspnet/physics/data/nthcomp_rollover.npz]
"""

from __future__ import annotations

import argparse
import datetime
import logging
from pathlib import Path

import numpy as np

from fspnet.physics._xspec import xspec_model, xspec_version
from runtools.io import atomic_path

_KTE_KEV = 100.0
_KT_SEED_KEV = 1e-3
_GAMMA = np.round(np.arange(1.05, 5.0 + 1e-9, 0.05), 4)
_LOG_X = np.linspace(np.log(1e-3), np.log(60.0), 321)
_NORM_X = (5e-4, 2e-3)


def make_table() -> dict[str, np.ndarray]:
    """Return gamma [G], log_x [X] and c [G, X] (float32)."""
    # Model bins: fine enough that c is flat across each (Delta ln E = 2.3e-3).
    edges = np.geomspace(0.005, 60.0 * _KTE_KEV, 6001)
    lo, hi = edges[:-1], edges[1:]
    x_mid = np.sqrt(lo * hi) / _KTE_KEV
    rows = []
    for gamma in _GAMMA:
        flux = xspec_model("nthcomp", edges, [gamma, _KTE_KEV, _KT_SEED_KEV, 0.0, 0.0])
        power = (lo ** (1 - gamma) - hi ** (1 - gamma)) / (gamma - 1)
        ratio = flux / power
        sel = (x_mid > _NORM_X[0]) & (x_mid < _NORM_X[1])
        ratio /= np.exp(np.mean(np.log(ratio[sel])))
        with np.errstate(divide="ignore"):
            log_ratio = np.log(np.maximum(ratio, 1e-300))
        rows.append(np.exp(np.interp(_LOG_X, np.log(x_mid), log_ratio)))
    c = np.array(rows)
    c[c < 1e-30] = 0.0
    return {"gamma": _GAMMA, "log_x": _LOG_X, "c": c.astype(np.float32)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(__file__).resolve().parents[1] / "fspnet/physics/data/nthcomp_rollover.npz"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    table = make_table()
    meta = {
        "model": f"nthcomp(Gamma, kT_e={_KTE_KEV}, kT_bb={_KT_SEED_KEV}, inp_type=0, z=0) / E^-Gamma",
        "source": f"XSPEC model library {xspec_version()}",
        "units": "log_x: ln(E / kT_e); c: dimensionless, 1 at x = 5e-4 - 2e-3",
        "interpolation": "linear in gamma and in ln x; c = c(x_min) below, 0 above the grid",
        "generated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "script": "scripts/make_simplcut_table.py",
        "kte_kev": _KTE_KEV,
    }
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **table, meta=np.array(repr(meta)))
        tmp.chmod(0o644)  # package data must be readable by everyone
    print(f"wrote {args.out} ({table['c'].shape[0]} x {table['c'].shape[1]})")


if __name__ == "__main__":
    main()
