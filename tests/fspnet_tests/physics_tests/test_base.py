"""Parameters, composition and the calling convention shared by every component."""

from __future__ import annotations

import pytest
import torch

from fspnet.physics import Component, EzDiskBB, Param, Simpl, SimplCutX, SourceModel, TBabs, energy_grid


def test_param_metadata_and_validation():
    p = Param(default=1.0, bounds=(0.1, 10.0), unit="keV", log=True, description="x")
    assert (p.default, p.bounds, p.unit, p.log, p.description) == (1.0, (0.1, 10.0), "keV", True, "x")
    with pytest.raises(ValueError, match=r"low < high, but got \(2.0, 1.0\)"):
        Param(default=1.0, bounds=(2.0, 1.0))
    with pytest.raises(ValueError, match="default 5.0 is outside its bounds"):
        Param(default=5.0, bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="log=True needs positive bounds"):
        Param(default=0.5, bounds=(0.0, 1.0), log=True)


def test_params_named_in_class_order():
    assert TBabs().param_names == ("nh",)
    assert EzDiskBB().param_names == ("kt_max", "norm")
    assert SimplCutX(EzDiskBB()).param_names == ("gamma", "fsc", "kt_max", "norm")
    model = TBabs() * SimplCutX(EzDiskBB())
    assert model.param_names == ("nh", "gamma", "fsc", "kt_max", "norm")
    assert [p.name for p in model.params] == list(model.param_names)


def test_composition_equals_product_of_parts():
    edges = energy_grid(300, 0.1, 50.0)
    p = torch.tensor([[0.7, 2.3, 0.2, 0.4, 1e3], [30.0, 1.5, 0.9, 2.0, 1.0]], dtype=torch.float64)
    total = (TBabs() * SimplCutX(EzDiskBB()))(edges, p)
    parts = TBabs()(edges, p[:, :1]) * SimplCutX(EzDiskBB())(edges, p[:, 1:])
    torch.testing.assert_close(total, parts, rtol=0, atol=0)


def test_single_row_and_defaults():
    model = SourceModel()
    edges = energy_grid(100, 0.1, 20.0)
    one = model(edges, model.default_params(1)[0])
    assert one.shape == (100,)
    torch.testing.assert_close(one, model(edges))  # no params: the defaults, one spectrum
    assert model.default_params(3).shape == (3, 5)
    assert model.bounds.shape == (5, 2)
    assert model.log_params == (0, 2, 3, 4)


def test_chunking_does_not_change_results():
    model = SourceModel()
    edges = energy_grid(400, 0.01, 100.0)
    g = torch.Generator().manual_seed(0)
    p = model.default_params(37)
    p[:, 1] = 1.3 + 2.7 * torch.rand(37, generator=g, dtype=torch.float64)
    whole = model(edges, p)
    model.chunk_rows = 5
    torch.testing.assert_close(model(edges, p), whole, rtol=0, atol=0)


def test_shape_errors_name_the_columns():
    edges = energy_grid(10, 1.0, 10.0)
    with pytest.raises(ValueError, match=r"params must be \[N, 5\] with columns \('nh', 'gamma'"):
        SourceModel()(edges, torch.ones(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="energy edges must be a 1-D tensor"):
        TBabs()(edges[None], torch.ones(1, 1))
    with pytest.raises(ValueError, match="positive and strictly increasing"):
        TBabs()(edges.flip(0), torch.ones(1, 1))


def test_composition_errors():
    with pytest.raises(TypeError, match="one factor must be multiplicative"):
        EzDiskBB() * EzDiskBB()
    with pytest.raises(TypeError, match="wraps an additive component"):
        Simpl(TBabs())


def test_a_new_component_is_params_plus_evaluate():
    class Flat(Component):
        level = Param(default=1.0, bounds=(0.0, 10.0), description="photons per bin")

        @staticmethod
        def evaluate(edges, level):
            return level.expand(-1, edges.numel() - 1)

    out = (TBabs() * Flat())(energy_grid(5, 1.0, 2.0), torch.tensor([[0.0, 2.0]]))
    torch.testing.assert_close(out, torch.full((1, 5), 2.0, dtype=torch.float64))


def _spread_params(model: Component, n: int, seed: int = 0) -> torch.Tensor:
    """[n, P] rows spread over every parameter's range (log-uniform for log parameters)."""
    b = model.bounds
    u = torch.rand(n, model.n_params, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    logs = torch.tensor([p.log for p in model.params])
    low, high = b[:, 0], b[:, 1]
    return torch.where(logs, low * (high / low) ** u, low + u * (high - low))


@pytest.mark.parametrize(
    "edges",
    [energy_grid(), torch.cat([energy_grid(150, 0.05, 2.0), energy_grid(90, 2.0, 60.0)[1:]])],
    ids=["log-uniform", "general"],
)
def test_bins_give_the_slice_of_the_whole_grid(edges):
    """``bins=(lo, hi)`` (what the synthesizer asks for: the bins its response folds) returns
    the same values as slicing the whole-grid result, for every kind of part: bin-local
    components, SimplCutX (inner bins 0:hi only), Simpl (whole grid, sliced) and products."""
    n_bins = edges.numel() - 1
    for model in (SourceModel(), TBabs() * Simpl(EzDiskBB(), upscatter_only=False), EzDiskBB()):
        p = _spread_params(model, 40)
        whole = model(edges, p)
        for lo, hi in ((0, n_bins // 3), (n_bins // 3, 4 * n_bins // 5), (n_bins // 2, n_bins), (0, n_bins), (5, 6)):
            part = model(edges, p, bins=(lo, hi))
            assert part.shape == (40, hi - lo)
            torch.testing.assert_close(part, whole[:, lo:hi], rtol=1e-10, atol=0, msg=f"{model!r} bins {lo}:{hi}")
        model.chunk_rows = 7  # blocks of rows too
        torch.testing.assert_close(model(edges, p, bins=(3, n_bins - 3)), whole[:, 3:-3], rtol=1e-10, atol=0)


def test_bins_keep_gradients_and_are_checked():
    model, edges = SourceModel(), energy_grid(300, 0.01, 100.0)
    p = model.default_params(3)
    p[:, 1] = torch.tensor([1.5, 2.2, 3.5])  # gamma
    p.requires_grad_(True)
    model(edges, p, bins=(100, 250)).log().sum().backward()
    g_bins = p.grad.clone()
    p.grad = None
    model(edges, p)[:, 100:250].log().sum().backward()
    assert torch.isfinite(g_bins).all() and (g_bins != 0).all()
    torch.testing.assert_close(g_bins, p.grad, rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match=r"SourceModel: bins must be \(lo, hi\) with 0 <= lo < hi <= 300, but got \(10, 301\)"):
        model(edges, p, bins=(10, 301))
    with pytest.raises(ValueError, match=r"bins must be \(lo, hi\) with 0 <= lo < hi <= 300, but got \(5, 5\)"):
        model(edges, p, bins=(5, 5))
