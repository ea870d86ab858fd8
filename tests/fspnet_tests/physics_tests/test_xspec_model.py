"""The ``xspec`` backend: any XSPEC expression, checked against direct calls of XSPEC's library."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("xspectrampoline")

from fspnet.errors import ConfigError
from fspnet.physics import DiskBB, Simpl, TBabs, XspecModel, energy_grid
from fspnet.physics._xspec import xspec_components, xspec_evaluate, xspec_model

pytestmark = pytest.mark.xspec

DISK_SIMPL = {
    "tbabs.nH": (0.01, 10.0, True),
    "simpl.Gamma": (1.3, 4.0, False),
    "simpl.FracSctr": (1e-3, 1.0, True),
    "diskbb.Tin": (0.05, 3.0, True),
    "diskbb.norm": (1.0, 1e6, True),
}


def _edges() -> np.ndarray:
    rng = np.random.default_rng(3)  # an irregular grid: no grid-specific caching can hide errors
    return np.sort(np.concatenate([np.geomspace(0.05, 50.0, 300), rng.uniform(0.05, 50.0, 40)]))


def test_tbabs_simpl_diskbb_agrees_with_the_native_diskbb_profile_path():
    model = XspecModel("tbabs*simpl(diskbb)", free=DISK_SIMPL)
    native = TBabs() * Simpl(DiskBB())
    assert model.n_params == native.n_params == 5
    edges = energy_grid()
    p = torch.tensor(
        [[0.3, 2.2, 0.1, 0.5, 1e3], [3.0, 3.5, 0.8, 1.5, 10.0], [0.02, 1.5, 0.01, 0.08, 1e5], [9.0, 1.4, 0.002, 2.9, 2.0]],
        dtype=torch.float64,
    )
    ours, ref = native(edges, p).numpy(), model(edges, p).numpy()
    e = edges.numpy()
    seen = (e[:-1] >= 0.1) & (e[1:] <= 20.0)  # every bin the NICER response folds (0.2-12 keV) and more
    for i in range(len(p)):
        bright = ref[i] > 1e-6 * ref[i].max()  # XSPEC's diskbb is a fit that fails in the far Wien tail
        assert (bright & seen).sum() > 300
        with np.errstate(divide="ignore", invalid="ignore"):  # bins where both are 0 are not compared
            rel = np.abs(ours[i] / ref[i] - 1)
        assert np.max(rel[bright & seen]) <= 1e-3, f"row {i}: {p[i].tolist()}"
        # the whole grid: within the native DiskBB's own oracle tolerance (test_ezdiskbb.py)
        assert np.max(rel[bright]) <= 2e-3, f"row {i}: {p[i].tolist()}"


def test_additive_component_is_xspec_times_its_norm():
    edges = _edges()
    model = XspecModel("powerlaw", free={"powerlaw.PhoIndex": (1.0, 3.0, False), "powerlaw.norm": (0.1, 10.0, True)})
    out = model(torch.from_numpy(edges), torch.tensor([[1.7, 2.5], [2.9, 0.3]], dtype=torch.float64))
    np.testing.assert_allclose(out[0].numpy(), 2.5 * xspec_model("powerlaw", edges, [1.7]), rtol=1e-12)
    np.testing.assert_allclose(out[1].numpy(), 0.3 * xspec_model("powerlaw", edges, [2.9]), rtol=1e-12)


def test_multiplicative_factors_multiply_the_group_they_act_on():
    edges = _edges()
    free = {
        "tbabs.nH": (0.1, 5.0, True),
        "diskbb.Tin": (0.1, 2.0, True),
        "diskbb.norm": (1.0, 1e4, True),
        "powerlaw.norm": (0.01, 1.0, True),
    }
    model = XspecModel("tbabs*(diskbb+powerlaw)", free=free, fixed={"powerlaw.PhoIndex": 2.4})
    assert model.param_names == ("tbabs.nH", "diskbb.Tin", "diskbb.norm", "powerlaw.norm")
    out = model(torch.from_numpy(edges), torch.tensor([0.7, 0.4, 300.0, 0.2], dtype=torch.float64)).numpy()
    source = 300.0 * xspec_model("diskbb", edges, [0.4]) + 0.2 * xspec_model("powerlaw", edges, [2.4])
    np.testing.assert_allclose(out, xspec_model("tbabs", edges, [0.7]) * source, rtol=1e-12)


def test_convolution_acts_on_everything_to_its_right():
    edges = _edges()
    free = {"simpl.Gamma": (1.5, 3.5, False), "tbabs.nH": (0.1, 5.0, True), "diskbb.Tin": (0.1, 2.0, True)}
    model = XspecModel("simpl*tbabs*diskbb", free=free, fixed={"diskbb.norm": 50.0, "simpl.FracSctr": 0.3})
    out = model(torch.from_numpy(edges), torch.tensor([2.6, 1.2, 0.3], dtype=torch.float64)).numpy()
    seed = 50.0 * xspec_model("tbabs", edges, [1.2]) * xspec_model("diskbb", edges, [0.3])
    ref = xspec_model("simpl", edges, [2.6, 0.3, 1.0], flux_in=seed)  # UpScOnly frozen at XSPEC's 1
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    # and the bracket form: only the bracket is convolved, the absorption multiplies the result
    brk = XspecModel("tbabs*thcomp(diskbb)", free={"thcomp.Gamma_tau": (1.5, 3.0, False), "tbabs.nH": (0.1, 5.0, True)})
    info = xspec_components()["thcomp"]
    par = [p.default for p in info.params]
    par[0] = 2.1
    got = brk(torch.from_numpy(edges), torch.tensor([1.1, 2.1], dtype=torch.float64)).numpy()
    want = xspec_model("tbabs", edges, [1.1]) * xspec_evaluate(info, edges, np.array(par), xspec_model("diskbb", edges, [1.0]))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_ties_repeated_components_and_case():
    edges = _edges()
    model = XspecModel(
        "TBabs*(powerlaw + POWERLAW)",
        free={"powerlaw.phoindex": (1.0, 3.0, False), "powerlaw.norm": (0.1, 10, True), "powerlaw_2.norm": (0.1, 10, True)},
        ties={"powerlaw_2.PhoIndex": "powerlaw.PhoIndex"},
    )
    assert model.param_names == ("powerlaw.PhoIndex", "powerlaw.norm", "powerlaw_2.norm")
    assert model.all_param_names == ("tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm", "powerlaw_2.PhoIndex", "powerlaw_2.norm")
    out = model(torch.from_numpy(edges), torch.tensor([2.2, 1.0, 3.0], dtype=torch.float64)).numpy()
    ref = xspec_model("tbabs", edges, [1.0]) * 4.0 * xspec_model("powerlaw", edges, [2.2])  # nH at XSPEC's default 1
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    assert model.describe()["ties"] == {"powerlaw_2.PhoIndex": "powerlaw.PhoIndex"}
    assert model.describe()["frozen"] == {"tbabs.nH": 1.0}


def test_component_interface_for_the_fit_and_the_sampler():
    model = XspecModel("tbabs*simpl(diskbb)", free=DISK_SIMPL)
    assert model.log_params == (0, 2, 3, 4)
    b = model.bounds.numpy()
    d = model.default_params(3).numpy()
    assert d.shape == (3, 5) and np.all((b[:, 0] <= d) & (d <= b[:, 1]))
    edges = energy_grid(500)
    batch = model(edges, torch.from_numpy(np.tile(d[0], (130, 1))))  # more rows than one chunk
    assert batch.shape == (130, 500) and torch.isfinite(batch).all()
    torch.testing.assert_close(batch[129], model(edges, torch.from_numpy(d[0])), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("expression", "match"),
    [
        (
            "tbabs*(diskbb+powerlw)",
            r"at position 14: unknown component 'powerlw' \(similar: [a-z, ]*powerlaw[a-z, ]*\); valid components are XSPEC's models: .*diskbb",
        ),
        ("tbabs*", r"expected a component name, but got the end"),
        ("diskbb*powerlaw", r"cannot multiply two additive parts \(diskbb \* powerlaw\); use '\+'"),
        ("powerlaw*simpl", r"the convolution simpl needs an additive spectrum to its right"),
        ("tbabs", r"must produce a spectrum"),
        ("(diskbb", r"expected '\)', but got the end"),
        ("diskbb - powerlaw", r"unexpected character '-'"),
        ("tbabs+diskbb", r"every term of a sum must be additive, but tbabs is multiplicative"),
        (
            "tbabs*ezdiskbb",
            r"XSPEC's ezdiskbb returned no flux at its default parameters .* probably missing from the xspectrampoline bundle",
        ),
    ],
)
def test_expression_errors_say_what_is_wrong(expression, match):
    with pytest.raises(ConfigError, match=match):
        XspecModel(expression)


def test_parameter_errors_list_the_valid_parameters():
    with pytest.raises(ConfigError) as err:
        XspecModel(
            "tbabs*diskbb",
            free={"diskbb.Tn": (0.1, 1.0, True), "diskbb.norm": (0.0, 10.0, True)},
            fixed={"tbabs.nh": 0.1},
            ties={"tbabs.nH": "diskbb.Tin"},
        )
    msg = str(err.value)
    assert (
        "sampling.params.diskbb.Tn: unknown parameter 'diskbb.Tn'; valid parameters of 'tbabs*diskbb' are tbabs.nH, diskbb.Tin, diskbb.norm"
        in msg
    )
    assert "sampling.params.diskbb.norm: needs low < high (and low > 0 when log)" in msg
    assert "model.ties.tbabs.nH: already set by model.fixed.tbabs.nh" in msg


def test_frozen_components_are_reused_only_on_the_same_grid_and_parameters():
    model = XspecModel("tbabs*powerlaw", free={"powerlaw.norm": (0.1, 10.0, True)}, fixed={"tbabs.nH": 0.5})
    for edges in (_edges(), np.geomspace(0.2, 12.0, 101), _edges()):
        out = model(torch.from_numpy(edges), torch.tensor([[2.0], [3.0]], dtype=torch.float64)).numpy()
        ref = xspec_model("tbabs", edges, [0.5]) * xspec_model("powerlaw", edges, [1.0])
        np.testing.assert_allclose(out, np.stack([2.0 * ref, 3.0 * ref]), rtol=1e-12)
    free = XspecModel("tbabs*powerlaw", free={"tbabs.nH": (0.1, 5.0, True)})
    edges = _edges()
    out = free(torch.from_numpy(edges), torch.tensor([[0.5], [0.5], [2.0]], dtype=torch.float64)).numpy()
    for row, nh in zip(out, (0.5, 0.5, 2.0)):
        np.testing.assert_allclose(row, xspec_model("tbabs", edges, [nh]) * xspec_model("powerlaw", edges, [1.0]), rtol=1e-12)
