"""The traditional fit recovers the parameters of synthetic spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fspnet.evaluate import fit_spectra, pgstat
from fspnet.synthesize import Synthesizer

EXPOSURE = 1000.0
TRUE = np.array([[0.3, 2.4, 0.2, 0.9, 500.0], [2.0, 1.9, 0.05, 0.4, 3e4], [0.05, 3.0, 0.5, 1.5, 40.0]])


@pytest.fixture(scope="module")
def data():
    gen = Synthesizer({"seed": 0})
    rng = np.random.default_rng(5)
    with torch.no_grad():
        rate = gen.expected_rate(TRUE)  # counts/s per group
    counts = rng.poisson(rate * EXPOSURE).astype(np.float64)
    return gen, counts


def test_fit_from_the_truth_does_not_get_worse(data):
    gen, counts = data
    result = fit_spectra(counts, EXPOSURE, gen.folder, init=TRUE, n_starts=0)
    true_stat = pgstat(torch.as_tensor(gen.expected_rate(TRUE)), torch.as_tensor(counts), EXPOSURE)
    assert np.all(result.stat <= true_stat.numpy() + 1e-6)
    assert np.all((result.reduced_stat > 0.6) & (result.reduced_stat < 1.6)) and result.converged.all()
    # Gamma and f_sc trade off in the third spectrum; the first two pin Gamma down.
    np.testing.assert_allclose(result.params[:2, 1], TRUE[:2, 1], rtol=0.05)


@pytest.mark.slow
def test_fit_from_random_starts_recovers_parameters(data):
    gen, counts = data
    result = fit_spectra(counts, EXPOSURE, gen.folder, n_starts=5, n_candidates=64, seed=1)
    assert np.all((result.reduced_stat > 0.6) & (result.reduced_stat < 1.6)), result.reduced_stat
    # N_H, Gamma and kT_max are well constrained at these counts.
    np.testing.assert_allclose(result.params[:, [0, 1, 3]], TRUE[:, [0, 1, 3]], rtol=0.25)
    assert result.n_evaluations > 0 and result.converged.all()
