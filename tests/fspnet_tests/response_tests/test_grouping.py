"""FSP-Net's channel grouping."""

from __future__ import annotations

import numpy as np
import pytest

from fspnet.errors import ResponseError
from fspnet.response import Grouping


def test_fspnet_grouping_numbers():
    g = Grouping.fspnet()
    assert len(g) == 240
    assert g.channel_span == (29, 994)  # first group 29-31 (0.305 keV), last kept 990-994
    np.testing.assert_allclose(g.energy_centres[[0, 1, -1]], [0.305, 0.335, 9.925])
    assert set(np.round(g.energy_widths, 6)) == {0.03, 0.04, 0.05}
    full = Grouping.fspnet(n_bins=None)
    assert len(full) == 241 and full.energy_centres[-1] == pytest.approx(9.975)
    everything = Grouping.fspnet(band_kev=(0.0, 100.0), n_bins=None)
    assert len(everything) == 346 and everything.size.sum() == 1500


def test_apply_sums_channels():
    g = Grouping.fspnet()
    channels = np.arange(1501)
    counts = np.ones(1501)
    grouped = g.apply(counts, channels)
    np.testing.assert_array_equal(grouped, g.size)
    assert g.apply(np.stack([counts, 2 * counts]), channels).shape == (2, 240)


def test_missing_channel_and_bad_breaks():
    g = Grouping.fspnet()
    with pytest.raises(ResponseError, match="group 0 needs channel 29"):
        g.matrix(np.arange(100, 1501))
    with pytest.raises(ResponseError, match="not a whole number of groups of 3"):
        Grouping.from_breaks([0, 10], [3], np.arange(10), np.arange(10), np.arange(1, 11))
    with pytest.raises(ResponseError, match="only 241 groups"):
        Grouping.fspnet(n_bins=300)
