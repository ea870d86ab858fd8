"""Regenerate ``tests/data/physics_xspec_oracle.npz``: XSPEC reference spectra for the tests.

The physics tests compare fspnet's models with these arrays, so they run fast and without
XSPEC; tests marked ``xspec`` also call the library live when it is installed. Everything
is on fspnet's default model grid (0.002-200 keV, 2000 log bins) except ``nthcomp``
(0.01-1000 keV, 1200 log bins, to show the whole rollover).

Needs ``xspectrampoline`` (XSPEC 6.35 model library). Usage:

    python scripts/make_physics_oracle.py [--out tests/data/physics_xspec_oracle.npz]
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np

from fspnet.physics import energy_grid
from fspnet.physics._xspec import xspec_model, xspec_version
from runtools.io import atomic_path

TBABS_NH = (0.005, 1.0, 75.0)
DISKBB_T = (0.025, 0.5, 4.0)
SIMPL_SEED_T = 0.3  # diskbb seed (norm 1) for the simpl cases
SIMPL_CASES = ((1.3, 0.5), (2.5, 0.2), (4.0, 1.0))  # (gamma, fsc)
NTHCOMP_GAMMA = (1.5, 2.0, 3.0)
NTHCOMP_KTE = 100.0
NTHCOMP_SEED = 1e-3


def make_oracle() -> dict[str, np.ndarray]:
    edges = energy_grid().numpy()
    out: dict[str, np.ndarray] = {"edges": edges}
    out["tbabs_nh"] = np.array(TBABS_NH)
    out["tbabs"] = np.array([xspec_model("tbabs", edges, [nh]) for nh in TBABS_NH])
    out["diskbb_t"] = np.array(DISKBB_T)
    out["diskbb"] = np.array([xspec_model("diskbb", edges, [t]) for t in DISKBB_T])
    seed = xspec_model("diskbb", edges, [SIMPL_SEED_T])
    out["simpl_seed"] = seed
    out["simpl_cases"] = np.array(SIMPL_CASES)
    for name, up in (("simpl_up", 1.0), ("simpl_updown", 0.0)):
        out[name] = np.array([xspec_model("simpl", edges, [g, f, up], flux_in=seed) for g, f in SIMPL_CASES])
    wide = np.geomspace(0.01, 1000.0, 1201)
    out["nthcomp_edges"] = wide
    out["nthcomp_gamma"] = np.array(NTHCOMP_GAMMA)
    out["nthcomp"] = np.array([xspec_model("nthcomp", wide, [g, NTHCOMP_KTE, NTHCOMP_SEED, 0.0, 0.0]) for g in NTHCOMP_GAMMA])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(__file__).resolve().parents[1] / "tests/data/physics_xspec_oracle.npz"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    data = make_oracle()
    meta = {
        "source": f"XSPEC model library {xspec_version()}, abund wilm",
        "generated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "script": "scripts/make_physics_oracle.py",
        "nthcomp": f"kT_e={NTHCOMP_KTE}, kT_bb={NTHCOMP_SEED}, inp_type=0, z=0",
    }
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **data, meta=np.array(repr(meta)))
        tmp.chmod(0o644)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
