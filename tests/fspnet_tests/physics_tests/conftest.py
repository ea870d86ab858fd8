"""Fixtures for the physics tests: the stored XSPEC oracle and a live XSPEC handle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ORACLE = Path(__file__).resolve().parents[2] / "data" / "physics_xspec_oracle.npz"


@pytest.fixture(scope="session")
def oracle() -> dict[str, np.ndarray]:
    """XSPEC reference spectra written by ``scripts/make_physics_oracle.py``."""
    with np.load(ORACLE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def xspec():
    """``fspnet.physics._xspec.xspec_model``, or skip when XSPEC's library is absent."""
    pytest.importorskip("xspectrampoline")
    from fspnet.physics._xspec import xspec_model

    return xspec_model
