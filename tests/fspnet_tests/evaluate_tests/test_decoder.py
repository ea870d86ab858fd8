"""python -m fspnet.evaluate on a decoder run: held-out reconstruction MSE, its noise floor and µs per spectrum."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fspnet.data import read_dataset, write_dataset
from fspnet.errors import DataError
from fspnet.evaluate import DecoderSection, evaluate, noise_floor, read_evaluation
from fspnet.evaluate.__main__ import main
from fspnet.evaluate._context import exposures
from fspnet.rundir import load_run
from fspnet.synthesize import Synthesizer


def test_decoder_run_gets_its_reconstruction_report(eval_runs, synth_paths, tmp_path, capsys):
    out = tmp_path / "decoder"
    assert (
        main(["--run", str(eval_runs["decoder"]), "--data", str(synth_paths["heldout"]), "--out", str(out), "--no-progress"]) == 0
    )
    printed = capsys.readouterr().out
    assert "held-out reconstruction MSE over 24 spectra" in printed and "µs/spectrum" in printed
    s = json.loads((out / "summary.json").read_text())
    assert s["stage"] == "decoder" and s["n_spectra"] == 24
    d = s["decoder"]
    # recomputed by hand from the run's network and transforms: the trainer's loss on these spectra
    run, ds = load_run(eval_runs["decoder"]), read_dataset(synth_paths["heldout"])
    with torch.no_grad():
        z = run.transforms.params(torch.as_tensor(ds.params, dtype=torch.float64)).float()
        recon = run.network(z).flatten(1).double()
    target = run.transforms.spectra(torch.as_tensor(ds.spectra, dtype=torch.float64))
    assert d["mse_transformed"] == pytest.approx(float(((recon - target) ** 2).mean()), rel=1e-6)
    physical = run.transforms.spectra.inverse(recon)
    expected = float(((physical - torch.as_tensor(ds.spectra, dtype=torch.float64)) ** 2).mean())
    assert d["mse_physical"] == pytest.approx(expected, rel=1e-6)
    assert 0 < d["us_per_spectrum"] == pytest.approx(d["s_per_spectrum"] * 1e6) and d["timing_batch"] == 24
    assert d["n_weights"] == sum(p.numel() for p in run.network.parameters())
    html = (out / "report.html").read_text()
    assert "Held-out reconstruction" in html and "data:image/png;base64," in html
    assert "decoder.mse_transformed" in (out / "summary.csv").read_text()
    with pytest.raises(DataError, match=r"summary\.json: the evaluation of a decoder run .*give an encoder run's evaluation"):
        read_evaluation(out / "summary.json")


def test_a_worse_decoder_has_a_larger_mse(eval_runs, synth_paths):
    run, ds = load_run(eval_runs["decoder"]), read_dataset(synth_paths["heldout"])
    good = DecoderSection.compute(run, ds)
    with torch.no_grad():
        for p in run.network.parameters():
            p.add_(0.1 * torch.randn_like(p, generator=torch.Generator().manual_seed(0)))
    bad = DecoderSection.compute(run, ds)
    assert bad.mse_transformed > good.mse_transformed and len(good.per_spectrum) == 24


def test_decoder_evaluation_needs_the_true_parameters(eval_runs, synth_paths, tmp_path):
    ds = read_dataset(synth_paths["heldout"])
    ds.params = None
    path = tmp_path / "noparams.h5"
    write_dataset(path, ds)
    with pytest.raises(DataError, match=r"noparams\.h5: the data have no parameters; a decoder is evaluated on spectra"):
        evaluate(eval_runs["decoder"], path, tmp_path / "out")


def test_decoder_evaluation_names_wrong_bins(eval_runs, synth_paths, tmp_path):
    ds = read_dataset(synth_paths["heldout"])
    ds.spectra = np.ascontiguousarray(ds.spectra[:, :100])
    ds.energy_centres, ds.energy_widths, ds.uncertainties = ds.energy_centres[:100], ds.energy_widths[:100], None
    path = tmp_path / "short.h5"
    write_dataset(path, ds)
    with pytest.raises(DataError, match=r"short\.h5: spectra have 100 bins, but .*decoder outputs 240"):
        evaluate(eval_runs["decoder"], path, tmp_path / "out")


def test_the_noise_floor_is_what_the_best_possible_decoder_scores(eval_runs, synth_paths):
    """The mean of many fresh noise draws at the true parameters is (nearly) the ideal decoder:
    its error against the held-out noisy spectra, an independent draw, is the floor."""
    run, ds = load_run(eval_runs["decoder"]), read_dataset(synth_paths["heldout"])
    floor = DecoderSection.compute(run, ds).noise_floor
    assert floor is not None and floor == noise_floor(run, ds)
    syn = Synthesizer(ds.source["config"])
    t, _ = exposures(ds, syn.folder.detectors)
    rng = np.random.default_rng(1)
    draws = [np.asarray(run.transforms.spectra(syn.simulate(ds.params, t, rng)[0])) for _ in range(64)]
    ideal = np.mean(draws, axis=0)
    held_out = np.asarray(run.transforms.spectra(np.asarray(ds.spectra, dtype=np.float64)))
    assert float(((ideal - held_out) ** 2).mean()) == pytest.approx(floor * (1 + 1 / 64), rel=0.25)


def test_spectra_without_noise_have_no_noise_floor(eval_runs, synth_paths, tmp_path):
    run, ds = load_run(eval_runs["decoder"]), read_dataset(synth_paths["heldout"])
    ds.source = {**ds.source, "config": {**ds.source["config"], "noise": "none"}}
    assert noise_floor(run, ds) is None
    ds.source = {"generator": "fspnet.preprocess"}
    assert noise_floor(run, ds) is None
