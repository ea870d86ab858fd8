"""Fixtures for the evaluation tests: a small generated dataset and tiny trained networks.

The spectra come from the real generator (forward model, NICER response, Poisson noise), so
the PGStat levels mean what they mean on real runs; the networks are the trainer tests' tiny
ones, trained for a few epochs, which is all the report machinery needs.
"""

from __future__ import annotations

import pytest

from fspnet.config import load_config
from fspnet.synthesize import synthesize
from fspnet.train import train


@pytest.fixture(scope="session")
def synth_paths(tmp_path_factory):
    """A 240-spectrum training file and a 24-spectrum held-out file (1000 s, Poisson noise)."""
    folder = tmp_path_factory.mktemp("evaldata")
    paths = {"train": folder / "train.h5", "heldout": folder / "heldout.h5"}
    synthesize({"seed": 0}, n=240, out=paths["train"], progress=False)
    synthesize({"seed": 1}, n=24, out=paths["heldout"], progress=False)
    return paths


@pytest.fixture(scope="session")
def eval_runs(tmp_path_factory, synth_paths, network_files):
    """Tiny decoder and encoder runs trained on the generated spectra."""
    root = tmp_path_factory.mktemp("evalruns")
    base = {
        "data.path": str(synth_paths["train"]),
        "decoder.network": str(network_files["decoder"]),
        "encoder.network": str(network_files["encoder"]),
        "training.batch_size": 32,
        "training.learning_rate": 3e-3,
        "training.progress": False,
        "training.device": "cpu",
        "training.plots": False,
    }
    dec, enc = root / "decoder", root / "encoder"
    train(load_config(None, {**base, "stage": "decoder", "run_dir": str(dec), "training.epochs": 4}))
    train(
        load_config(
            None, {**base, "stage": "encoder", "run_dir": str(enc), "encoder.decoder_run": str(dec), "training.epochs": 3}
        )
    )
    return {"decoder": dec, "encoder": enc}
