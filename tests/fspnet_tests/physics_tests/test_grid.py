from __future__ import annotations

import pytest
import torch

from fspnet.physics import energy_grid


def test_default_grid_is_fspnet_xspec_energies():
    edges = energy_grid()
    assert edges.dtype == torch.float64
    assert edges.shape == (2001,)
    assert float(edges[0]) == 0.002
    assert float(edges[-1]) == 200.0
    ratio = edges[1:] / edges[:-1]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-12)
    assert float(ratio[0]) == pytest.approx(1e5 ** (1 / 2000), rel=1e-12)


def test_custom_grid():
    edges = energy_grid(10, 1.0, 10.0)
    assert edges.shape == (11,)
    assert float(edges[5]) == pytest.approx(10**0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_bins": 0}, "n_bins must be a positive integer, but got 0"),
        ({"n_bins": 2.5}, "n_bins must be a positive integer"),
        ({"low_kev": 0.0}, "need 0 < low_kev < high_kev"),
        ({"low_kev": 5.0, "high_kev": 1.0}, "need 0 < low_kev < high_kev, but got low_kev=5.0"),
    ],
)
def test_bad_grid(kwargs, match):
    with pytest.raises(ValueError, match=match):
        energy_grid(**kwargs)
