"""Fixtures shared by every test package."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores are shared by the whole suite; more threads only add contention.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)
