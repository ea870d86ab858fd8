"""netloader v3 network files, checked against netloader itself (the test-only oracle).

``netloader`` (MIT, on PyPI, by FSP-Net's author) is what FSP-Net's later network files were
written for. For each of our own v3 files (``tests/data/fspnet_nets/netloader_v3/``, written
for these tests, covering every netloader layer type FSP-Net's files use, composite layers
included) the network built here must have netloader's parameter count and output shape, its
weights must map one to one (same shapes, same order), and with netloader's weights copied in
it must give netloader's outputs.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest
import torch

from fspnet.errors import NetworkConfigError
from fspnet.nets import build_network

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # netloader warns about the Python version on import
        import netloader.network as netloader_network
except ImportError:
    pytest.skip("netloader (a dev dependency) is not installed", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:Python version:DeprecationWarning")

DATA = Path(__file__).parents[2] / "data" / "fspnet_nets" / "netloader_v3"

# file: (netloader's input shape, our input shape as the trainer gives it, output shape)
FILES = {
    "decoder": ([5], (5,), [240]),
    "encoder": ([1, 240], (240,), [5]),
    "blocks": ([1, 240], (240,), [5]),
}


def _netloader(name: str, in_shape: list[int], out_shape: list[int]) -> torch.nn.Module:
    logging.getLogger("netloader").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return netloader_network.Network(name, "", in_shape, out_shape, root=str(DATA))


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", list(FILES))
def test_same_parameter_count_and_output_shape_as_netloader(name):
    nl_in, in_shape, out_shape = FILES[name]
    oracle = _netloader(name, nl_in, out_shape)
    net = build_network(DATA / f"{name}.json", in_shape, tuple(out_shape))
    assert _count(net) == _count(oracle)
    assert list(net.output_shape) == list(oracle.shapes[-1])


@pytest.mark.parametrize("name", list(FILES))
def test_same_outputs_for_the_same_weights(name):
    nl_in, in_shape, out_shape = FILES[name]
    torch.manual_seed(1)
    oracle = _netloader(name, nl_in, out_shape).double()
    net = build_network(DATA / f"{name}.json", in_shape, tuple(out_shape)).double()
    theirs, ours = oracle.state_dict(), net.state_dict()
    assert [v.shape for v in theirs.values()] == [v.shape for v in ours.values()]
    with torch.no_grad():
        for (key, value), mine in zip(theirs.items(), ours.values()):
            if value.is_floating_point():
                # random weights and statistics, so that every layer changes the output
                value.copy_(torch.rand_like(value) + 0.5 if "running_var" in key else torch.randn_like(value) * 0.3)
            mine.copy_(value)
    oracle.eval(), net.eval()
    x = torch.randn(6, *nl_in, dtype=torch.float64)
    with torch.no_grad():
        expected = oracle(x)
        got = net(x.reshape(6, *in_shape))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert expected.std() > 1e-3  # the comparison is not between two constants


def test_composite_layers_are_inlined_so_the_config_stands_alone(tmp_path):
    net = build_network(DATA / "blocks.json", (240,), (5,))
    composite = net.config["layers"][2]
    assert composite["type"] == "Composite" and composite["config"]["layers"][1]["filters"] == 8
    assert "factor" not in composite["config"]["layers"][1]
    saved = tmp_path / "network.json"  # a run directory, far from composite_layers/
    saved.write_text(json.dumps(net.config))
    again = build_network(saved, (240,))
    again.load_state_dict(net.state_dict())
    net.eval(), again.eval()
    x = torch.randn(2, 240)
    assert torch.equal(net(x), again(x))


def test_missing_composite_names_where_it_looked(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"layers": [{"type": "Composite", "name": "nothing"}]}))
    with pytest.raises(
        NetworkConfigError,
        match=rf"^{path}: layers\[0\] \(Composite\): "
        r"composite layer 'nothing' not found; looked for .*nothing\.json",
    ):
        build_network(path, (1, 8))


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (
            {"layers": [{"type": "Linear", "features": 4}, {"type": "linear", "features": 4}]},
            r"layers\[1\]: unknown netloader layer type 'linear'; known types: Linear, Conv, .*"
            r"\(FSP-Net's lowercase types cannot be mixed with netloader's in one file\)",
        ),
        (
            {"layers": [{"type": "Linear", "units": 4}]},
            r"layers\[0\] \(Linear\): units: unknown key; valid keys are features, layer, factor, "
            r"batch_norm, flatten_target, dropout, activation, group, version, description$",
        ),
        (
            {"layers": [{"type": "Linear", "factor": "half"}]},
            r"layers\[0\] \(Linear\): factor: expected float, but got str 'half'$",
        ),
        ({"layers": [{"type": "Reshape", "shape": "8"}]}, r"layers\[0\] \(Reshape\): shape: expected a list, but got str '8'$"),
        (
            {"layers": [{"type": "Shortcut", "layer": "first"}]},
            r"layers\[0\] \(Shortcut\): layer: expected int, but got str 'first'$",
        ),
        ({"net": {"Conv": 3}, "layers": [{"type": "Checkpoint"}]}, r"net\.Conv: expected a mapping, but got int 3$"),
        (
            {"net": {"layers": {"Dense": {}}}, "layers": [{"type": "Checkpoint"}]},
            r"net\.layers\.Dense: expected an object of defaults for a known layer type$",
        ),
        (
            {"net": {"Conv": {"kernal": 3}}, "layers": [{"type": "Conv", "filters": 2}]},
            r"layers\[0\] \(Conv\): kernal: unknown key; valid keys are filters, layer, factor, kernel",
        ),
        ({"layers": [{"type": "Checkpoint", "group": 1}]}, r"layers\[0\] \(Checkpoint\): group 1 is not supported; only group 0"),
        (
            {"net": {"speed": 1}, "layers": [{"type": "Checkpoint"}]},
            r"net\.speed: unknown key; valid keys are checkpoints, description, paper, github, version, "
            r"layers, Linear, Conv, ",
        ),
        (
            {"layers": [{"type": "Linear", "factor": 1}]},
            r"layers\[0\] \(Linear\): 'factor' sizes this layer relative to the network's output, "
            r"but no output_shape was given",
        ),
        (
            {"layers": [{"type": "Conv", "filters": 2, "stride": 2, "padding": "same"}]},
            r"layers\[0\] \(Conv\): 'same' padding is not supported for strides > 1 \(2\)",
        ),
        (
            {"layers": [{"type": "Linear", "features": 4}, {"type": "Shortcut", "layer": 0}]},
            r"layers\[1\] \(Shortcut\): cannot add shape \[3\] from output 0 to shape \[4\]",
        ),
        (
            {"layers": [{"type": "Linear", "features": 4, "activation": "Sparkle"}]},
            r"activation 'Sparkle' is not a torch.nn activation",
        ),
        ({"layers": [{"type": "Scale"}]}, r"layers\[0\] \(Scale\): missing required key 'dims'"),
    ],
)
def test_netloader_config_errors(config, match):
    with pytest.raises(NetworkConfigError, match=match):
        build_network(config, (3,))


def test_wrong_output_shape_fails_for_netloader_files(tmp_path):
    path = tmp_path / "encoder.json"
    path.write_text(json.dumps({"layers": [{"type": "Conv", "filters": 2}]}))
    with pytest.raises(
        NetworkConfigError,
        match=rf"^{path}: the layers produce an output of "
        r"shape \[2, 238\] per sample, but this network must produce \[5\]",
    ):
        build_network(path, (240,), (5,))
