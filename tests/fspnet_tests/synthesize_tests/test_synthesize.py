"""The native generator: draws, noise, rejection, reproducibility, config validation, CLI."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest
import torch

from fspnet.data import read_dataset
from fspnet.errors import ConfigError, DataError, ResponseError
from fspnet.synthesize import Synthesizer, load_synthesize_config, main, synthesize, validate_config
from tests.fspnet_tests.response_tests.fits_helpers import write_pha

EXPOSURE = 1000.0


@pytest.fixture(scope="module")
def clean() -> Synthesizer:
    return Synthesizer({"noise": "none", "seed": 3})


def _counts(ds, exposure=EXPOSURE):
    return (ds.spectra.astype(np.float64) * ds.energy_widths * 52 * exposure).sum(axis=1)


def test_dataset_contract_and_rejection(tmp_path):
    ds = synthesize({"seed": 1}, n=40, out=tmp_path / "s.h5", progress=False)
    back = read_dataset(tmp_path / "s.h5")
    assert back.spectra.shape == (40, 240) and back.spectra.dtype == np.float32
    assert back.uncertainties.shape == (40, 240) and np.all(back.uncertainties > 0)
    assert back.param_names == ["nh", "gamma", "fsc", "kt_max", "norm"] and back.log_params == [0, 2, 3, 4]
    assert back.units["spectra"] == "counts s^-1 keV^-1 detector^-1"
    assert back.source["generator"] == "fspnet.synthesize" and back.source["config"]["seed"] == 1
    np.testing.assert_allclose(back.energy_centres[[0, -1]], [0.305, 9.925])
    assert np.all(_counts(ds) >= 1e4 - 1e-3)  # FSP-Net's rule: >= 1e4 net counts in 0.3-10 keV
    lo = np.array([5e-3, 1.3, 1e-3, 0.025, 1e-2])
    hi = np.array([75.0, 4.0, 1.0, 4.0, 1e10])
    assert np.all((back.params >= lo) & (back.params <= hi))
    assert back.source["draws"] >= 40 and 0 < back.source["acceptance"] <= 1


def test_same_seed_same_file(tmp_path):
    cfg = {"seed": 7, "sampling": {"method": "latin_hypercube"}, "prescreen": False, "chunk_size": 128}
    a = synthesize(cfg, n=30, out=tmp_path / "a.h5", progress=False)
    b = synthesize(cfg, n=30, out=tmp_path / "b.h5", progress=False)
    np.testing.assert_array_equal(a.spectra, b.spectra)
    np.testing.assert_array_equal(a.params, b.params)
    assert filecmp.cmp(tmp_path / "a.h5", tmp_path / "b.h5", shallow=False)
    c = synthesize({**cfg, "seed": 8}, n=30, progress=False)
    assert not np.array_equal(a.params, c.params)


def test_more_spectra_extend_the_file_of_fewer():
    """The campaign's studies train on the first N spectra of the final training's file: with
    the default (independent) draws, a seed's first N spectra do not depend on how many follow."""
    cfg = {"seed": 5, "chunk_size": 16}
    few = synthesize(cfg, n=20, progress=False)
    many = synthesize(cfg, n=70, progress=False)
    np.testing.assert_array_equal(many.spectra[:20], few.spectra)
    np.testing.assert_array_equal(many.params[:20], few.params)


def test_clean_mode_is_the_folded_model(clean):
    ds = clean.run(20, progress=False)
    with torch.no_grad():
        expected = clean.folder(clean.model(clean.edges, torch.as_tensor(ds.params))).numpy()
    np.testing.assert_allclose(ds.spectra, expected, rtol=1e-5)
    counts = expected * clean.folder.energy_widths * 52 * EXPOSURE
    sigma = np.sqrt(np.maximum(counts, 1.0)) / (EXPOSURE * 52 * clean.folder.energy_widths)
    np.testing.assert_allclose(ds.uncertainties, sigma, rtol=1e-5)


def test_expected_rate_evaluates_only_the_folded_bins(clean):
    """The generator evaluates the model on the folder's model_range only (a third
    of the 2000-bin grid never reaches the NICER response); the rates are those of the whole
    grid folded, and the folder takes either width."""
    lo, hi = clean.folder.model_range
    assert 0 < lo < hi < len(clean.edges) - 1  # the default grid has bins on both sides
    params = clean.sample_params(64, np.random.default_rng(5))
    with torch.no_grad():
        whole = clean.model(clean.edges, torch.as_tensor(params))
        cut = clean.model(clean.edges, torch.as_tensor(params), bins=(lo, hi))
        reference = clean.folder.counts_rate(whole).numpy()
        np.testing.assert_array_equal(clean.folder.counts_rate(whole[:, lo:hi]).numpy(), reference)
        np.testing.assert_allclose(clean.folder.counts_rate(cut).numpy(), reference, rtol=1e-12, atol=0)
    np.testing.assert_allclose(clean.expected_rate(params), reference, rtol=1e-12, atol=0)
    with pytest.raises(
        ResponseError, match=rf"flux has 7 model bins, but the folder was built for 2000 \(or {hi - lo}, the bins of"
    ):
        clean.folder.counts_rate(torch.ones(1, 7))


def test_poisson_noise_statistics(clean):
    rng = np.random.default_rng(0)
    params = np.tile([[0.5, 2.2, 0.1, 0.8, 300.0]], (400, 1))
    noisy = Synthesizer({"seed": 0})
    spectra, _, _ = noisy.simulate(params, np.full(400, EXPOSURE), rng)
    expected, sigma, _ = clean.simulate(params[:1], np.full(1, EXPOSURE), rng)
    z = (spectra.mean(axis=0) - expected[0]) / (sigma[0] / np.sqrt(400))
    assert np.abs(z).mean() < 1.2 and np.abs(z).max() < 6
    ratio = spectra.std(axis=0) / sigma[0]
    assert 0.85 < np.median(ratio) < 1.15


def test_background_and_exposure_range(tmp_path):
    bkg = np.full(1501, 50)
    write_pha(tmp_path / "bkg.pha", bkg, exposure=500.0, backscal=2.0)
    cfg = {
        "seed": 2,
        "noise": "none",
        "background": {"file": str(tmp_path / "bkg.pha"), "source_backscal": 1.0},
        "exposure": {"range": [500.0, 2000.0], "log": True},
    }
    gen = Synthesizer(cfg)
    ds = gen.run(10, progress=False)
    # Clean: the background cancels exactly; uncertainties include it.
    with torch.no_grad():
        expected = gen.folder(gen.model(gen.edges, torch.as_tensor(ds.params))).numpy()
    np.testing.assert_allclose(ds.spectra, expected, rtol=1e-5)
    assert ds.source["background"]["backscal"] == 2.0
    exposure = gen.sample_exposure(1000, np.random.default_rng(0))
    assert exposure.min() >= 500.0 and exposure.max() <= 2000.0
    noisy = Synthesizer({**cfg, "noise": "poisson"}).run(10, progress=False)
    assert np.all(np.isfinite(noisy.spectra))


def test_low_acceptance_is_a_clear_error():
    with pytest.raises(DataError, match=r"only 0 of 5 spectra accepted after \d+ draws .* lower min_counts"):
        synthesize({"min_counts": 1e30, "max_draws_factor": 20}, n=5, progress=False)


def test_config_errors_name_every_key_path(tmp_path):
    with pytest.raises(ConfigError) as err:
        validate_config(
            {
                "noise": "gaussian",
                "exposure": {"range": [10.0, 1.0]},
                "sampling": {"method": "sobol", "params": {"mass": {"low": 1}}, "typo": 1},
                "seeds": 3,
                "chunk_size": "big",
            },
            "cfg.yaml",
        )
    msg = str(err.value)
    for piece in (
        "cfg.yaml: noise: unknown 'gaussian'; choose one of none, poisson",
        "cfg.yaml: exposure.range: must be [low, high] with 0 < low <= high",
        "cfg.yaml: sampling.method: unknown 'sobol'",
        "cfg.yaml: sampling.params.mass: unknown parameter; valid parameters are nh, gamma, fsc, kt_max, norm",
        "cfg.yaml: sampling.typo: unknown key; valid keys are method, params",
        "cfg.yaml: seeds: unknown key",
        "cfg.yaml: chunk_size: expected int, but got str 'big'",
    ):
        assert piece in msg
    (tmp_path / "c.yaml").write_text("background: {file: nowhere.pha}\n")
    with pytest.raises(ConfigError, match="c.yaml: background.file: file not found: nowhere.pha"):
        load_synthesize_config(tmp_path / "c.yaml")


def test_shipped_config_is_valid():
    cfg = load_synthesize_config("configs/synthesize.yaml")
    assert cfg.sampling.params["norm"].high == 1e10 and cfg.min_counts == 1e4


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    assert main(["--config", "configs/synthesize.yaml", "--n", "12", "--out", str(out), "--no-progress", "--seed", "4"]) == 0
    assert read_dataset(out).spectra.shape == (12, 240)
    assert "wrote" in capsys.readouterr().out
    assert main(["--n", "3", "--out", str(out), "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_workers_do_not_change_the_output():
    cfg = {"seed": 11, "chunk_size": 64}
    one = Synthesizer(cfg).run(150, progress=False)
    two = Synthesizer(cfg).run(150, progress=False, workers=2)
    np.testing.assert_array_equal(one.spectra, two.spectra)
    np.testing.assert_array_equal(one.params, two.params)
    assert one.source == two.source


def test_workers_take_the_parents_prescreen_table(monkeypatch):
    """Worker processes get the parent's prescreen table (~4,000 model evaluations, ~0.8
    CPU-s) with their config instead of each computing it again."""
    import fspnet.synthesize as syn

    parent = Synthesizer({"seed": 2})
    table = parent._screen()
    assert table is not None
    monkeypatch.setattr(syn, "_WORKER", None)
    monkeypatch.setattr(Synthesizer, "expected_rate", lambda self, params: pytest.fail("the worker recomputed the table"))
    threads = torch.get_num_threads()
    try:
        syn._init_worker(parent.config, table)  # sets this process's torch threads to 1
    finally:
        torch.set_num_threads(threads)
    assert syn._WORKER is not None and syn._WORKER._screen() is table


def test_prescreen_bound_holds(clean):
    """The model-free bound is above the exact counts for every draw (so skipping is exact)."""
    rng = np.random.default_rng(9)
    params = clean.sample_params(3000, rng)
    exposure = np.full(3000, EXPOSURE)
    exact = clean.expected_rate(params).sum(axis=1) * EXPOSURE
    bound = clean.upper_counts(params, exposure)
    assert np.all(bound >= exact)
    assert np.mean(bound / 2 >= exact) > 0.999  # even without the safety factor of 2
    skipped = np.mean(bound < 1e4)
    assert skipped > 0.2 and np.all(exact[bound < 1e4] < 1e4)


def test_prescreen_keeps_the_distribution():
    on = Synthesizer({"seed": 5, "noise": "none"}).run(400, progress=False)
    off = Synthesizer({"seed": 5, "noise": "none", "prescreen": False}).run(400, progress=False)
    # Same parameter draws; the prescreen only skips draws that would be rejected anyway.
    np.testing.assert_array_equal(on.params, off.params)
    np.testing.assert_allclose(on.spectra, off.spectra, rtol=1e-6)
