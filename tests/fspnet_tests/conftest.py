"""Fixtures for the trainer tests: a small dataset of smooth synthetic spectra and tiny networks."""

from __future__ import annotations

import numpy as np
import pytest

from fspnet.data import SpectrumDataset, clear_dataset_cache, write_dataset

PARAM_NAMES = ["nh", "gamma", "fsc", "kt_max", "norm"]
LOG_PARAMS = [0, 2, 3, 4]


def smooth_spectra(params: np.ndarray, energy_kev: np.ndarray) -> np.ndarray:
    """A cheap stand-in for the forward model: absorbed power law plus a thermal bump.

    Any smooth function of the parameters will do for testing the trainer; a few bins are
    zeroed so the transform's clamping is exercised.
    """
    nh, gamma, fsc, kt, norm = (params[:, i : i + 1] for i in range(5))
    e = energy_kev[None, :]
    power = fsc * e ** (-gamma)
    disk = (1 - fsc) * e**2 / (np.exp(e / kt) - 1 + 1e-9) / kt**3
    flux = norm**0.05 * np.exp(-0.3 * nh**0.5 / e) * (power + 0.01 * disk)
    flux[:, ::97] = 0.0
    return flux.astype(np.float32)


def make_dataset(n: int, seed: int = 0, n_bins: int = 240, with_params: bool = True) -> SpectrumDataset:
    """``n`` spectra of ``n_bins`` bins from parameters drawn in the physics ranges."""
    rng = np.random.default_rng(seed)
    params = np.stack(
        [10 ** rng.uniform(np.log10(5e-3), np.log10(75), n), rng.uniform(1.3, 4, n), 10 ** rng.uniform(-3, 0, n),
         10 ** rng.uniform(np.log10(0.025), np.log10(4), n), 10 ** rng.uniform(-2, 10, n)], axis=1,
    )  # fmt: skip
    edges = np.geomspace(0.3, 10, n_bins + 1)
    centres, widths = np.sqrt(edges[1:] * edges[:-1]), np.diff(edges)
    return SpectrumDataset(
        spectra=smooth_spectra(params, centres),
        energy_centres=centres,
        energy_widths=widths,
        params=params if with_params else None,
        names=[f"spec{i:04d}" for i in range(n)],
        param_names=PARAM_NAMES if with_params else [],
        log_params=LOG_PARAMS if with_params else [],
        units={"spectra": "arbitrary"},
        source={"generator": "tests smooth_spectra", "seed": seed},
    )


@pytest.fixture(scope="session")
def dataset_path(tmp_path_factory):
    """An HDF5 file of 400 smooth spectra with parameters."""
    path = tmp_path_factory.mktemp("data") / "smooth.h5"
    write_dataset(path, make_dataset(400))
    return path


@pytest.fixture(autouse=True)
def _fresh_dataset_cache():
    clear_dataset_cache()
    yield
    clear_dataset_cache()


# Tiny networks in the fspnet.nets vocabulary keep the trainer tests fast; the default
# FSP-Net networks are exercised by the nets tests and the benchmark.
TINY_DECODER = {
    "net": {"dropout_prob": 0.1},
    "layers": [
        {"type": "linear", "features": 32, "dropout": True},
        {"type": "linear", "features": 240, "activation": False},
    ],
}
TINY_ENCODER = {
    "net": {"dropout_prob": 0.1},
    "layers": [
        {"type": "linear", "features": 32, "dropout": True},
        {"type": "linear", "features": 5, "activation": False},
    ],
}


@pytest.fixture(scope="session")
def network_files(tmp_path_factory):
    """Paths of the tiny decoder and encoder JSON files."""
    import json

    folder = tmp_path_factory.mktemp("networks")
    (folder / "decoder.json").write_text(json.dumps(TINY_DECODER))
    (folder / "encoder.json").write_text(json.dumps(TINY_ENCODER))
    return {"decoder": folder / "decoder.json", "encoder": folder / "encoder.json"}


@pytest.fixture(scope="session")
def base_overrides(dataset_path, network_files):
    """Dotted overrides for a fast run on the small dataset with the tiny networks."""
    return {
        "data.path": str(dataset_path),
        "decoder.network": str(network_files["decoder"]),
        "encoder.network": str(network_files["encoder"]),
        "training.epochs": 4,
        "training.batch_size": 32,
        "training.learning_rate": 3e-3,
        "training.progress": False,
        "training.device": "cpu",
        "training.plots": False,  # matplotlib costs seconds; the decoder_run fixture draws them
    }


@pytest.fixture(scope="session")
def decoder_run(tmp_path_factory, base_overrides):
    """A trained tiny decoder run directory (shared by encoder and prediction tests)."""
    from fspnet.config import load_config
    from fspnet.train import train

    run_dir = tmp_path_factory.mktemp("runs") / "decoder"
    train(load_config(None, {**base_overrides, "training.epochs": 8, "training.plots": True, "run_dir": str(run_dir)}))
    return run_dir
