"""Regenerate ``fspnet/physics/data/tbabs_wilm.npz`` from XSPEC's own ``tbabs``.

XSPEC 6.35 ``tbabs`` (tbvabs 2.3; Wilms, Allen & McCray 2000) with ``abund wilm`` computes,
for each bin, the cross-section per H atom

    sigma_bin = gas_bin + grains(dust_bin / n_dust)

where ``gas`` (atoms in the gas phase plus H2) and ``dust`` (atoms locked in grains) are
linear in the elemental cross-sections and are averaged over the bin's two edges, and
``grains`` is the non-linear self-shielding of a power-law distribution of grain sizes
(appendix of Wilms et al. 2000). This script measures the two point functions gas(E) and
dust(E) through XSPEC's ``tbvarabs`` (the same code with every setting exposed):

* gas:  abundances = tbabs' gas fractions (its depletion factors), H2 fraction 0.2, no grains;
* dust: abundances = 1000 x the grain fractions, no H2, no grains, minus pure H, / 1000.

Each function is sampled on a fine log grid (Delta ln E = 4.6e-5) through bins of
relative width 2e-9, every discontinuity (absorption edge) is located by bisection and
stored as two knots 2e-8 apart, and the rest is thinned to the knots that keep log-log
linear interpolation within ``--rtol`` of every sample. The grain constants are stored
too; ``fspnet.physics.TBabs`` rebuilds sigma_bin from them and the script checks that the
rebuilt values match ``tbabs`` itself on a test grid.

XSPEC's model library comes from ``xspectrampoline`` (``pip install xspectrampoline==0.1.5``),
needed only to run this script. Usage:

    python scripts/make_tbabs_table.py [--out fspnet/physics/data/tbabs_wilm.npz] [--rtol 5e-6]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import typing as tp
from pathlib import Path

import numpy as np

from fspnet.physics._xspec import xspec_abundance, xspec_model, xspec_version
from runtools.io import atomic_path

_log = logging.getLogger("make_tbabs_table")

_E_MIN_KEV = 1e-3
_E_MAX_KEV = 1e3
_N_FINE = 300_001
_SIGMA_FLOOR = 1e-12  # 1e-22 cm^2 per H; below this a value is stored as zero
_LOG_ZERO = -700.0

# tbabs' fixed settings (Wilms et al. 2000, Table 2 and Sect. 2): elements in tbvarabs
# order, their gas fractions ("depletion factors"), atomic weights used for the grain
# mass, H2 fraction and the grain size distribution.
ELEMENTS = ("H", "He", "C", "N", "O", "Ne", "Na", "Mg", "Al", "Si", "S", "Cl", "Ar", "Ca",
            "Cr", "Fe", "Co", "Ni")  # fmt: skip
GAS_FRACTION = (1.0, 1.0, 0.5, 1.0, 0.6, 1.0, 0.25, 0.2, 0.02, 0.1, 0.6, 0.5, 1.0, 0.003,
                0.03, 0.3, 0.05, 0.04)  # fmt: skip
ATOMIC_WEIGHT = (1, 4, 12, 14, 16, 20, 23, 24, 27, 28, 32, 35, 40, 40, 52, 56, 59, 59)
H2_FRACTION = 0.2
GRAIN_RHO_G_CM3 = 1.0
GRAIN_AMIN_UM = 0.025
GRAIN_AMAX_UM = 0.25
GRAIN_PL = 3.5
_DUST_BOOST = 1000.0


def _tbvarabs_sigma(energy_kev: np.ndarray, abundance: np.ndarray, h2: float) -> np.ndarray:
    """sigma(E) per H (1e-22 cm^2) of tbvarabs without grains, at each (sorted) energy."""
    e = np.empty(2 * len(energy_kev))
    e[0::2] = energy_kev * (1.0 - 1e-9)
    e[1::2] = energy_kev * (1.0 + 1e-9)
    par = np.zeros(42)
    par[1:18] = abundance
    par[18] = h2
    par[19] = 0.0  # rho = 0: no grain phase, every atom in the gas
    par[20:23] = GRAIN_AMIN_UM, GRAIN_AMAX_UM, GRAIN_PL
    par[23:41] = 1.0
    sigma = np.full(len(energy_kev), np.nan)
    # Columns from large to small; keep the first with a well-conditioned optical depth.
    for nh in (1e8, 1e4, 1.0, 1e-4, 1e-8):
        par[0] = nh
        t = xspec_model("tbvarabs", e, par)[0::2]
        with np.errstate(divide="ignore"):
            tau = -np.log(t)
        ok = np.isnan(sigma) & (tau > 1e-5) & (tau < 600.0)
        sigma[ok] = tau[ok] / nh
    sigma[np.isnan(sigma)] = 0.0
    return sigma


def gas_sigma(energy_kev: np.ndarray) -> np.ndarray:
    """Gas-phase atoms plus H2, per H, 1e-22 cm^2."""
    return _tbvarabs_sigma(energy_kev, np.array(GAS_FRACTION[1:]), H2_FRACTION)


def dust_sigma(energy_kev: np.ndarray) -> np.ndarray:
    """Atoms in grains (summed, not shielded), per H, 1e-22 cm^2."""
    grain = _DUST_BOOST * (1.0 - np.array(GAS_FRACTION[1:]))
    both = _tbvarabs_sigma(energy_kev, grain, 0.0)
    hydrogen = _tbvarabs_sigma(energy_kev, np.zeros(17), 0.0)
    return np.maximum(both - hydrogen, 0.0) / _DUST_BOOST


def _log_sigma(sigma: np.ndarray) -> np.ndarray:
    return np.where(sigma > _SIGMA_FLOOR, np.log(np.maximum(sigma, 1e-300)), _LOG_ZERO)


def _find_edges(
    fn: tp.Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray
) -> list[tuple[float, float, float, float]]:
    """(E_left, E_right, ln sigma(E_left), ln sigma(E_right)) for each jump of ln sigma."""
    # A smooth cross-section changes ln sigma by ~3 Delta ln E = 1.4e-4 between samples.
    cand = np.nonzero(np.abs(np.diff(y)) > 5e-3)[0]
    edges = []
    for k in cand:
        lo, hi = np.exp(x[k]), np.exp(x[k + 1])
        ylo, yhi = y[k], y[k + 1]
        for _ in range(40):
            mid = np.sqrt(lo * hi)
            ym = _log_sigma(fn(np.array([mid])))[0]
            if abs(ym - ylo) < abs(ym - yhi):
                lo, ylo = mid, ym
            else:
                hi, yhi = mid, ym
        # Knots just outside the ~1e-9 sliver where XSPEC (float32 energies) is ambiguous.
        e_left, e_right = lo * (1 - 1e-8), hi * (1 + 1e-8)
        y_left, y_right = _log_sigma(fn(np.array([e_left, e_right])))
        if abs(y_right - y_left) > 1e-3:  # still a jump across 2e-8: a true edge
            edges.append((e_left, e_right, y_left, y_right))
    # A jump that straddles two fine intervals is found twice: keep one.
    unique: list[tuple[float, float, float, float]] = []
    for edge in sorted(edges):
        if unique and edge[0] <= unique[-1][1] * (1 + 1e-6):
            continue
        unique.append(edge)
    return unique


def _thin(x: np.ndarray, y: np.ndarray, rtol: float) -> np.ndarray:
    """Indices of the knots that keep linear interpolation of y(x) within rtol."""
    keep = [0]
    i, n = 0, len(x)

    def fits(j: int) -> bool:
        xs, ys = x[i : j + 1], y[i : j + 1]
        interp = ys[0] + (ys[-1] - ys[0]) * (xs - xs[0]) / (xs[-1] - xs[0])
        err = np.abs(interp - ys)
        # Error in ln sigma is the relative error in sigma; zeros only need to stay tiny.
        zero = (ys <= _LOG_ZERO + 1) & (interp <= np.log(_SIGMA_FLOOR))
        return bool(np.all(err[~zero] <= rtol))

    while i < n - 1:
        step, j = 1, i + 1
        while j + step < n and fits(j + step):  # grow by doubling ...
            j += step
            step *= 2
        lo, hi = j, min(j + step, n - 1)
        while hi - lo > 1:  # ... then bisect to the longest segment that fits
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


def _refine(
    fn: tp.Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, rtol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Add midpoints wherever linear interpolation misses the function by more than rtol.

    Resonances (He near 60 eV, O and Ne K, Fe L) are narrower than the fine grid; each
    round halves the flagged intervals, down to Delta ln E ~ 5e-9.
    """
    xs, ys = x, y
    todo = np.arange(len(x) - 1)
    for _ in range(13):
        if len(todo) == 0:
            break
        xm = 0.5 * (xs[todo] + xs[todo + 1])
        ym = _log_sigma(fn(np.exp(xm)))
        err = np.abs(ym - 0.5 * (ys[todo] + ys[todo + 1]))
        zero = (ym <= _LOG_ZERO + 1) & (ys[todo] <= _LOG_ZERO + 1)
        bad = (err > rtol) & ~zero
        order = np.argsort(np.r_[xs, xm])
        is_new = np.r_[np.zeros(len(xs), bool), bad][order]
        xs, ys = np.r_[xs, xm][order], np.r_[ys, ym][order]
        # intervals to check next: on both sides of every flagged midpoint
        pos = np.nonzero(is_new)[0]
        todo = np.unique(np.r_[pos - 1, pos])
        todo = todo[(todo >= 0) & (todo < len(xs) - 1)]
    _log.info("%s: refined to %d samples", fn.__name__, len(xs))
    return xs, ys


def make_knots(fn: tp.Callable[[np.ndarray], np.ndarray], rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """Knots (ln E, ln sigma) of one cross-section function."""
    energy = np.geomspace(_E_MIN_KEV, _E_MAX_KEV, _N_FINE)
    x = np.log(energy)
    y = _log_sigma(fn(energy))
    x, y = _refine(fn, x, y, rtol)
    energy = np.exp(x)
    edges = _find_edges(fn, x, y)
    bounds = [(energy[0], energy[0])] + [(e[0], e[1]) for e in edges] + [(energy[-1], energy[-1])]
    kx, ky = [], []
    for s in range(len(bounds) - 1):
        a, b = bounds[s][1], bounds[s + 1][0]  # from one edge's right knot to the next's left
        inside = (energy > a) & (energy < b)
        inside[0] |= s == 0
        inside[-1] |= s == len(bounds) - 2
        xs, ys = x[inside], y[inside]
        if s > 0:
            xs, ys = np.r_[np.log(a), xs], np.r_[edges[s - 1][3], ys]
        if s < len(edges):
            xs, ys = np.r_[xs, np.log(b)], np.r_[ys, edges[s][2]]
        idx = _thin(xs, ys, rtol)
        kx.append(xs[idx])
        ky.append(ys[idx])
    knots_x, knots_y = np.concatenate(kx), np.concatenate(ky)
    assert np.all(np.diff(knots_x) > 0), "knots must be strictly increasing"
    back = np.interp(x, knots_x, knots_y)
    far = np.ones_like(x, dtype=bool)
    for e in edges:
        far &= ~((x > np.log(e[0])) & (x < np.log(e[1])))
    big = far & (y > np.log(_SIGMA_FLOOR))
    _log.info(
        "%s: %d edges, %d knots, max |d ln sigma| %.1e",
        fn.__name__,
        len(edges),
        len(knots_x),
        np.abs(back - y)[big].max(),
    )
    return knots_x, knots_y


def grain_constants() -> dict[str, float]:
    """Abundances folded into the numbers the grain-shielding formula needs."""
    abund = np.array([1.0] + [xspec_abundance(el) for el in ELEMENTS[1:]])
    in_grains = abund * (1.0 - np.array(GAS_FRACTION))
    return {
        "grain_atoms_per_h": float(np.sum(in_grains)),
        "grain_amu_per_h": float(np.sum(in_grains * np.array(ATOMIC_WEIGHT, dtype=float))),
        "grain_rho_g_cm3": GRAIN_RHO_G_CM3,
        "grain_amin_um": GRAIN_AMIN_UM,
        "grain_amax_um": GRAIN_AMAX_UM,
        "grain_pl": GRAIN_PL,
    }


def _check(table: dict[str, np.ndarray]) -> None:
    """The rebuilt bin cross-sections must match tbabs on a grid with edges and O K."""
    from fspnet.physics._tbabs import _bin_sigma_from

    edges = np.geomspace(0.05, 20.0, 1501)
    ours = _bin_sigma_from(table, edges)
    nh = 1e-3
    ref = -np.log(xspec_model("tbabs", edges, [nh])) / nh
    err = np.max(np.abs(ours / ref - 1))
    _log.info("rebuilt tbabs vs XSPEC on 0.05-20 keV (1500 bins): max relative error %.1e", err)
    if err > 1e-4:
        raise RuntimeError(f"tbabs table does not reproduce XSPEC (max relative error {err:.2e})")


def build_table(rtol: float) -> dict[str, tp.Any]:
    """Measure both cross-sections, thin them and check the result against tbabs."""
    gx, gy = make_knots(gas_sigma, rtol)
    dx, dy = make_knots(dust_sigma, rtol)
    table: dict[str, tp.Any] = {
        "gas_log_energy_kev": gx,
        "gas_log_sigma": gy,
        "dust_log_energy_kev": dx,
        "dust_log_sigma": dy,
        **{k: np.array(v) for k, v in grain_constants().items()},
    }
    _check(table)
    return table


def write_table(table: dict[str, tp.Any], out: Path) -> None:
    """Write the table with its provenance, atomically and world-readable."""
    meta = {
        "model": "tbabs (tbvabs 2.3), abund wilm",
        "source": f"XSPEC model library {xspec_version()}, through tbvarabs",
        "units": "*_log_energy_kev: ln(E/keV); *_log_sigma: ln(sigma / 1e-22 cm^2 per H), "
        f"{_LOG_ZERO} means 0; grain_*: see fspnet/physics/_tbabs.py",
        "interpolation": "linear in (ln E, ln sigma); each edge is two knots 2e-8 apart",
        "generated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "script": "scripts/make_tbabs_table.py",
    }
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **table, meta=np.array(repr(meta)))
        tmp.chmod(0o644)  # package data must be readable by everyone


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(__file__).resolve().parents[1] / "fspnet/physics/data/tbabs_wilm.npz"
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--rtol", type=float, default=5e-6, help="max error in ln sigma")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    table = build_table(args.rtol)
    write_table(table, args.out)
    n_gas, n_dust = len(table["gas_log_energy_kev"]), len(table["dust_log_energy_kev"])
    print(f"wrote {args.out} (gas {n_gas} knots, dust {n_dust} knots)")


if __name__ == "__main__":
    main()
