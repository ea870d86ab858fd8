"""Folding model flux through the response into FSP-Net bins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fspnet.errors import ResponseError
from fspnet.response import Folder, Grouping, Response, rebin_matrix


def _powerlaw(edges: np.ndarray, gamma: float, norm: float = 1.0) -> np.ndarray:
    """Photon flux per bin of norm * E^-gamma (exact integral)."""
    a = 1 - gamma
    return norm * (edges[1:] ** a - edges[:-1] ** a) / a


@pytest.fixture(scope="module")
def nicer() -> Response:
    return Response.nicer()


def test_rebin_matrix_conserves_flux():
    model = np.geomspace(0.05, 30.0, 301)
    rsp = np.linspace(0.1, 20.0, 101)
    w = rebin_matrix(model, rsp[:-1], rsp[1:]).toarray()
    flux = _powerlaw(model, 1.7)
    exact = _powerlaw(rsp, 1.7)
    # Constant density within a model bin: exact in total, ~1 % per bin here (model bins of 2 %).
    np.testing.assert_allclose((flux @ w).sum(), exact.sum(), rtol=1e-3)
    np.testing.assert_allclose(flux @ w, exact, rtol=1.5e-2)
    np.testing.assert_allclose(w.sum(axis=1)[(model[1:] < 0.1)], 0.0)


def test_folder_matches_direct_folding(nicer):
    edges = np.geomspace(0.002, 200.0, 2001)
    folder = Folder(nicer, edges, dtype=torch.float64)
    flux = torch.as_tensor(np.stack([_powerlaw(edges, 2.0), _powerlaw(edges, 1.3, 5.0)]))
    rate = folder.counts_rate(flux).numpy()
    rsp_edges = np.append(nicer.energ_lo, nicer.energ_hi[-1])
    direct = np.stack([_powerlaw(rsp_edges, 2.0), _powerlaw(rsp_edges, 1.3, 5.0)]) @ nicer.effective_matrix()
    np.testing.assert_allclose(rate, direct, rtol=5e-3)
    spectrum = folder(flux).numpy()
    np.testing.assert_allclose(spectrum, rate / (52 * folder.energy_widths), rtol=1e-12)
    assert spectrum.shape == (2, 240) and folder.energy_centres[0] == pytest.approx(0.305)


def test_float32_product_is_accurate_at_any_norm(nicer):
    edges = np.geomspace(0.002, 200.0, 2001)
    f64 = Folder(nicer, edges, dtype=torch.float64)
    f32 = Folder(nicer, edges, dtype=torch.float32)
    base = torch.as_tensor(_powerlaw(edges, 2.5))
    for norm in (1e-30, 1.0, 1e35):
        flux = (base * norm).unsqueeze(0)
        np.testing.assert_allclose(f32(flux).numpy(), f64(flux).numpy(), rtol=2e-5)


def test_folder_is_differentiable(nicer):
    edges = torch.as_tensor(np.geomspace(0.002, 200.0, 2001))
    folder = Folder(nicer, edges, dtype=torch.float64)
    flux = torch.as_tensor(_powerlaw(edges.numpy(), 2.0)).unsqueeze(0).requires_grad_()
    folder(flux).sum().backward()
    assert flux.grad is not None and torch.isfinite(flux.grad).all() and flux.grad.abs().sum() > 0


def test_folder_errors(nicer):
    with pytest.raises(ResponseError, match="does not overlap the response"):
        Folder(nicer, np.geomspace(50.0, 100.0, 11))
    folder = Folder(nicer, np.geomspace(0.002, 200.0, 101))
    with pytest.raises(ResponseError, match="flux has 7 model bins, but the folder was built for 100"):
        folder(torch.ones(1, 7))
    with pytest.raises(ResponseError, match="detectors must be positive"):
        Folder(nicer, np.geomspace(0.002, 200.0, 101), Grouping.fspnet(), detectors=0)
