"""Regenerate ``fspnet/physics/data/tbabs_wilm.npz`` from XSPEC's own ``tbabs``.

The table holds the total ISM photo-absorption cross-section per hydrogen atom,
sigma(E) in units of 1e-22 cm^2 (so that transmission = exp(-N_H sigma) with N_H in
1e22 cm^-2), of XSPEC 6.35 ``tbabs`` (tbvabs 2.3, Wilms, Allen & McCray 2000) with
``abund wilm``. XSPEC's model library is reached through ``xspectrampoline``
(``pip install xspectrampoline==0.1.5``); it is needed only to run this script.

How: sigma at an energy E is read from a bin of relative width 2e-9 around E (tbabs
averages the cross-section at the two edges of a bin), with N_H chosen per energy so
that the optical depth is well conditioned. A fine log grid (Delta ln E = 4.6e-5) is
sampled, every discontinuity (absorption edge) is located by bisection and stored as
a pair of knots 2e-8 apart with the bin-straddling excess (see ``_edge_excess``), and the rest is thinned greedily to the knots that keep
log-log linear interpolation within ``--rtol`` of every fine sample.

Usage:
    python scripts/make_tbabs_table.py [--out fspnet/physics/data/tbabs_wilm.npz] [--rtol 2e-6]
"""

from __future__ import annotations

import argparse
import datetime
import logging
from pathlib import Path

import numpy as np

from fspnet._io import atomic_path
from fspnet.physics._xspec import xspec_model, xspec_version

_log = logging.getLogger("make_tbabs_table")

_E_MIN_KEV = 1e-3
_E_MAX_KEV = 1e3
_N_FINE = 300_001
# sigma below this (1e-22 cm^2 per H) is stored as zero: N_H sigma < 1e-9 at N_H = 75.
_SIGMA_FLOOR = 1e-11
_LOG_ZERO = -700.0


def _sigma(energy_kev: np.ndarray) -> np.ndarray:
    """XSPEC tbabs cross-section at each energy (sorted), 1e-22 cm^2 per H."""
    e = np.empty(2 * len(energy_kev))
    e[0::2] = energy_kev * (1.0 - 1e-9)
    e[1::2] = energy_kev * (1.0 + 1e-9)
    sigma = np.full(len(energy_kev), np.nan)
    # Try column densities from large to small; keep the first with 1e-3 < tau < 300.
    for nh in 10.0 ** np.arange(8, -9, -1, dtype=float):
        t = xspec_model("tbabs", e, [nh])[0::2]
        with np.errstate(divide="ignore"):
            tau = -np.log(t)
        ok = np.isnan(sigma) & (tau > 1e-3) & (tau < 300.0)
        sigma[ok] = tau[ok] / nh
    # Energies where even N_H = 1e8 gives tau < 1e-3 have sigma < 1e-11: zero.
    sigma[np.isnan(sigma)] = 0.0
    sigma[sigma < _SIGMA_FLOOR] = 0.0
    return sigma


def _log_sigma(sigma: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(sigma > 0, np.log(np.maximum(sigma, 1e-300)), _LOG_ZERO)


def _find_edges(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Locate jumps of ln sigma between fine samples.

    Returns (E_left, E_right, ln sigma(E_left), ln sigma(E_right)) per edge, the two
    energies 2e-8 apart around the jump. (Within ~1e-9 of an edge tbabs returns an
    intermediate value; knots just outside that sliver keep the table clean.)
    """
    dy = np.diff(y)
    # A smooth cross-section changes ln sigma by about 3 Delta ln E between samples.
    cand = np.nonzero(np.abs(dy) > 5e-3)[0]
    edges = []
    for k in cand:
        lo, hi = np.exp(x[k]), np.exp(x[k + 1])
        ylo, yhi = y[k], y[k + 1]
        for _ in range(40):
            mid = np.sqrt(lo * hi)
            ym = _log_sigma(_sigma(np.array([mid])))[0]
            if abs(ym - ylo) < abs(ym - yhi):
                lo, ylo = mid, ym
            else:
                hi, yhi = mid, ym
        e_left, e_right = lo * (1 - 1e-8), hi * (1 + 1e-8)
        y_left, y_right = _log_sigma(_sigma(np.array([e_left, e_right])))
        if abs(y_right - y_left) > 1e-3:  # still a jump across 2e-8: a true edge
            edges.append((e_left, e_right, y_left, y_right))
    return edges


def _edge_excess(edges: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Extra cross-section of a bin that straddles an edge, beyond the mean of its ends.

    tbabs combines part of the cross-section (the grains' self-shielding) non-linearly
    after averaging over the two bin edges, so a bin that contains an edge absorbs a
    little more (or less) than the mean of sigma(lo) and sigma(hi). Measured with a bin
    of relative width 2e-6 around the edge; it changes by about 2 % for bins 1 % wide.
    """
    out = []
    for e_left, e_right, _, _ in edges:
        e = np.sqrt(e_left * e_right)
        lo, hi = e * (1 - 1e-6), e * (1 + 1e-6)
        straddle = _sigma_bins(np.array([lo, hi]))[0]
        s_lo, s_hi = _sigma(np.array([lo, hi]))
        out.append(straddle - 0.5 * (s_lo + s_hi))
    return np.array(out)


def _sigma_bins(bin_edges_kev: np.ndarray) -> np.ndarray:
    """XSPEC tbabs bin-averaged cross-section per bin, 1e-22 cm^2 per H."""
    for nh in 10.0 ** np.arange(0, -9, -1, dtype=float):
        with np.errstate(divide="ignore"):
            tau = -np.log(xspec_model("tbabs", bin_edges_kev, [nh]))
        if np.all(np.isfinite(tau)) and np.all(tau < 300.0):
            return tau / nh
    raise RuntimeError("tbabs: could not find a column density with finite optical depth")


def _thin(x: np.ndarray, y: np.ndarray, rtol: float) -> np.ndarray:
    """Greedy knot selection so that linear interpolation of y(x) stays within rtol."""
    keep = [0]
    i, n = 0, len(x)
    while i < n - 1:
        step, j = 1, i + 1
        # Grow the segment by doubling, then bisect back to the longest one that fits.
        def fits(j: int) -> bool:
            xs, ys = x[i : j + 1], y[i : j + 1]
            interp = ys[0] + (ys[-1] - ys[0]) * (xs - xs[0]) / (xs[-1] - xs[0])
            err = np.abs(interp - ys)
            # Relative error in sigma ~ error in ln sigma; ignore values that are ~zero.
            err[(ys <= _LOG_ZERO + 1) & (interp <= np.log(_SIGMA_FLOOR))] = 0.0
            return bool(np.all(err <= rtol))

        while j + step < n and fits(j + step):
            j += step
            step *= 2
        lo, hi = j, min(j + step, n - 1)
        while hi - lo > 1:
            m = (lo + hi) // 2
            if fits(m):
                lo = m
            else:
                hi = m
        if hi == n - 1 and fits(hi):
            lo = hi
        keep.append(lo)
        i = lo
    return np.array(keep)


def make_table(rtol: float) -> dict[str, np.ndarray]:
    """Sample, locate edges and thin; return the arrays stored in the table."""
    energy = np.geomspace(_E_MIN_KEV, _E_MAX_KEV, _N_FINE)
    x = np.log(energy)
    y = _log_sigma(_sigma(energy))
    edges = _find_edges(x, y)
    _log.info("found %d absorption edges", len(edges))
    # Segments between edges are thinned separately; each edge contributes two knots.
    bounds = [(np.exp(x[0]), np.exp(x[0]))] + [(e[0], e[1]) for e in edges]
    bounds.append((np.exp(x[-1]), np.exp(x[-1])))
    knots_x, knots_y = [], []
    for s in range(len(bounds) - 1):
        a, b = bounds[s][1], bounds[s + 1][0]  # segment from one edge's right to the next's left
        inside = (energy > a) & (energy < b)
        if s == 0:
            inside[0] = True
        if s == len(bounds) - 2:
            inside[-1] = True
        xs, ys = x[inside], y[inside]
        if s > 0:  # right limit at the edge that opens this segment
            xs = np.concatenate([[np.log(a)], xs])
            ys = np.concatenate([[edges[s - 1][3]], ys])
        if s < len(edges):  # left limit at the edge that closes it
            xs = np.concatenate([xs, [np.log(b)]])
            ys = np.concatenate([ys, [edges[s][2]]])
        idx = _thin(xs, ys, rtol)
        knots_x.append(xs[idx])
        knots_y.append(ys[idx])
    kx = np.concatenate(knots_x)
    ky = np.concatenate(knots_y)
    order = np.argsort(kx, kind="stable")
    kx, ky = kx[order], ky[order]
    assert np.all(np.diff(kx) > 0), "knots must be strictly increasing"
    # Check: the thinned table reproduces every fine sample away from the edges.
    back = np.interp(x, kx, ky)
    near_edge = np.zeros_like(x, dtype=bool)
    for e in edges:
        near_edge |= (x > np.log(e[0])) & (x < np.log(e[1]))
    err = np.abs(back - y)[~near_edge & (y > np.log(_SIGMA_FLOOR))]
    _log.info("%d knots; max |d ln sigma| on the fine grid %.2e", len(kx), err.max())
    return {
        "log_energy_kev": kx,
        "log_sigma": ky,
        "edge_energy_kev": np.array([np.sqrt(e[0] * e[1]) for e in edges]),
        "edge_excess": _edge_excess(edges),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(__file__).resolve().parents[1] / "fspnet/physics/data/tbabs_wilm.npz"
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--rtol", type=float, default=2e-6, help="max error in ln sigma")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    table = make_table(args.rtol)
    meta = {
        "model": "tbabs (tbvabs 2.3), abund wilm",
        "source": f"XSPEC model library {xspec_version()}",
        "units": "log_energy_kev: ln(E/keV); log_sigma: ln(sigma / 1e-22 cm^2 per H), "
        f"{_LOG_ZERO} means sigma = 0",
        "interpolation": "linear in (ln E, ln sigma); each edge is two knots 2e-8 apart; a bin containing edge_energy_kev[k] adds edge_excess[k] to the mean of its end values",
        "generated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "script": "scripts/make_tbabs_table.py",
    }
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **table, meta=np.array(repr(meta)))
        tmp.chmod(0o644)  # package data must be readable by everyone
    print(f"wrote {args.out} ({len(table['log_energy_kev'])} knots)")


if __name__ == "__main__":
    main()
