"""Tests for fspnet.nets.build_network: every layer type, shape inference and error messages."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fspnet.errors import NetworkConfigError
from fspnet.nets import LAYER_TYPES, build_network


def _net(*layers, **net):
    return {"net": net, "layers": list(layers)}


# (config, input shape, expected output shape) for every layer type and its main options
CASES = {
    "linear features": (_net({"type": "linear", "features": 4}), (6,), (4,)),
    # factor scales the network's output size (4 here), not the layer's input size (6)
    "linear factor": (_net({"type": "linear", "factor": 1, "activation": False}), (6,), (4,)),
    "linear on [C, L]": (_net({"type": "linear", "features": 4}), (2, 6), (2, 4)),
    "linear dropout batch_norm": (
        _net({"type": "linear", "features": 4, "dropout": True, "batch_norm": 1}, dropout_prob=0.2),
        (6,),
        (4,),
    ),
    "convolutional 1-D input": (_net({"type": "convolutional", "filters": 3}), (8,), (3, 8)),
    "convolutional strided": (
        _net(
            {"type": "convolutional", "filters": 3, "kernel": 3, "stride": 2, "padding": 1, "batch_norm": True, "dropout": True},
            dropout_prob=0.1,
        ),
        (2, 8),
        (3, 4),
    ),
    "convolutional even kernel same": (_net({"type": "convolutional", "filters": 3, "kernel": 2}), (2, 8), (3, 8)),
    "gru": (_net({"type": "gru"}), (1, 8), (1, 8)),
    "gru bidirectional sum": (_net({"type": "gru", "bidirectional": "sum"}), (8,), (1, 8)),
    "gru bidirectional mean": (_net({"type": "gru", "bidirectional": "mean", "layers": 1}), (1, 8), (1, 8)),
    "gru bidirectional concatenate": (
        _net({"type": "gru", "bidirectional": "concatenate", "batch_norm": True}, dropout_prob=0.1),
        (1, 8),
        (2, 8),
    ),
    "gru hidden 2 (torch.nn.GRU path)": (_net({"type": "gru", "filters": 2, "bidirectional": "mean"}), (1, 8), (2, 8)),
    "gru filters from 3 channels": (_net({"type": "gru", "filters": 1}), (3, 8), (1, 8)),
    "recurrent default hidden size 1": (_net({"type": "recurrent"}), (3, 8), (1, 8)),
    "recurrent lstm batch_norm": (_net({"type": "recurrent", "method": "lstm", "filters": 2, "batch_norm": 1}), (8,), (2, 8)),
    "recurrent rnn 'None' string": (_net({"type": "recurrent", "method": "rnn", "bidirectional": "None"}), (8,), (1, 8)),
    "GRU (oldest spelling)": (_net({"type": "GRU"}), (1, 8), (1, 8)),
    "index greater": (_net({"type": "index", "number": -2, "greater": 1}), (6,), (2,)),
    "index less": (_net({"type": "index", "number": -2, "greater": 0}), (6,), (4,)),
    "clone": (_net({"type": "clone", "number": 2}), (6,), (6,)),
    "squeeze": (_net({"type": "reshape", "output": [1, -1]}, {"type": "squeeze", "squeeze": True, "dim": 1}), (6,), (6,)),
    "unsqueeze": (_net({"type": "squeeze", "squeeze": 0, "dim": 1}), (6,), (1, 6)),
    "sample": (_net({"type": "sample", "features": 3}), (6,), (3,)),
    "sample factor": (_net({"type": "sample", "factor": 1}), (6,), (2,)),
    "concatenate last axis": (
        _net({"type": "linear", "features": 4}, {"type": "concatenate", "layer": 0, "channel": False}),
        (3,),
        (7,),
    ),
    "linear_upscale": (_net({"type": "linear_upscale"}), (8,), (16,)),
    "linear_upscale [C, L]": (_net({"type": "linear_upscale", "activation": False}), (2, 4), (2, 8)),
    "conv_upscale": (_net({"type": "conv_upscale", "filters": 4, "batch_norm": True}), (2, 8), (2, 16)),
    "conv_transpose": (_net({"type": "conv_transpose", "filters": 3}), (2, 8), (3, 16)),
    "upsample": (_net({"type": "upsample"}), (2, 8), (2, 16)),
    "upsample 1-D input": (_net({"type": "upsample"}), (8,), (1, 16)),
    "conv_depth_downscale": (_net({"type": "conv_depth_downscale"}), (3, 8), (1, 8)),
    "conv_downscale": (_net({"type": "conv_downscale", "filters": 4}), (8,), (4, 4)),
    "conv_downscale odd length": (_net({"type": "conv_downscale", "filters": 4}), (2, 7), (4, 4)),
    "pool": (_net({"type": "pool"}), (2, 9), (2, 4)),
    "reshape": (_net({"type": "reshape", "output": [2, -1]}), (8,), (2, 4)),
    "extract": (_net({"type": "linear", "features": 8}, {"type": "extract", "number": 2}), (3,), (6,)),
    "concatenate": (_net({"type": "linear", "features": 4}, {"type": "concatenate", "layer": 0}), (3,), (7,)),
    "shortcut": (
        _net({"type": "linear", "features": 4}, {"type": "linear", "features": 4}, {"type": "shortcut", "layer": -2}),
        (3,),
        (4,),
    ),
    "skip": (
        _net({"type": "linear", "features": 4}, {"type": "skip", "layer": 0}, {"type": "linear", "features": 2}),
        (3,),
        (2,),
    ),
    "checkpoint": (
        _net(
            {"type": "linear", "features": 4},
            {"type": "checkpoint"},
            {"type": "linear", "features": 4},
            {"type": "shortcut", "layer": 0},
            checkpoints=True,
        ),
        (3,),
        (4,),
    ),
}


def test_cases_cover_every_layer_type():
    used = {layer["type"] for cfg, _, _ in CASES.values() for layer in cfg["layers"]}
    assert used == set(LAYER_TYPES)


@pytest.mark.parametrize("name", list(CASES))
def test_layer_builds_runs_and_backpropagates(name):
    config, input_shape, expected = CASES[name]
    torch.manual_seed(0)
    net = build_network(config, input_shape, expected)
    assert net.output_shape == expected
    assert net.input_shape == input_shape
    assert len(net.layer_shapes) == len(config["layers"])
    x = torch.randn(3, *input_shape, requires_grad=True)
    y = net(x)
    assert y.shape == (3, *expected)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for p in net.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (3, *expected)


def test_every_layer_shape_matches_forward():
    config = _net(
        {"type": "conv_downscale", "filters": 4},
        {"type": "conv_upscale", "filters": 4},
        {"type": "conv_transpose", "filters": 2},
        {"type": "pool"},
        {"type": "gru", "bidirectional": "concatenate", "filters": 1},
        {"type": "conv_depth_downscale"},
        {"type": "upsample"},
        {"type": "reshape", "output": [-1]},
        {"type": "linear_upscale"},
        {"type": "linear", "factor": 1},
    )
    net = build_network(config, (10,), (10,))
    x = torch.randn(2, 10)
    for layer, shape in zip(net.layers, net.layer_shapes):
        x = layer(x)
        assert tuple(x.shape[1:]) == shape
    assert net.output_shape == (10,)


def test_merge_layers_compute_what_they_say():
    torch.manual_seed(0)
    net = build_network(CASES["shortcut"][0], (3,))
    x = torch.randn(5, 3)
    a = net.layers[0](x)
    assert torch.allclose(net(x), net.layers[1](a) + a)

    net = build_network(CASES["concatenate"][0], (3,))
    assert torch.equal(net(x), torch.cat([net.layers[0](x), x], dim=1))

    net = build_network(_net({"type": "linear", "features": 4}, {"type": "skip", "layer": 0}), (3,))
    assert torch.equal(net(x), x)

    net = build_network(_net({"type": "extract", "number": 1}), (3,))
    assert torch.equal(net(x), x[:, 1:])
    assert torch.equal(net.extraction, x[:, :1])


def test_pixel_shuffle_interleaves_channel_blocks():
    net = build_network(_net({"type": "conv_upscale", "filters": 2, "activation": False}), (4,))
    x = torch.randn(1, 4)
    conv = net.layers[0].conv(x.unsqueeze(1))  # [1, 2, 4]
    out = net(x)  # [1, 1, 8]
    assert torch.equal(out[0, 0, 0::2], conv[0, 0])
    assert torch.equal(out[0, 0, 1::2], conv[0, 1])


def test_net_defaults_and_dropout_prob():
    config = {
        "net": {"dropout_prob": 0.3, "convolutional": {"batch_norm": True}},
        "layers": [{"type": "convolutional", "filters": 2}, {"type": "convolutional", "filters": 2, "batch_norm": False}],
    }
    net = build_network(config, (6,))
    assert isinstance(net.layers[0].batch_norm, nn.BatchNorm1d)
    assert not hasattr(net.layers[1], "batch_norm")
    assert net.layers[0].dropout.p == pytest.approx(0.3)
    # dropout on but probability 0: no module at all
    net = build_network(_net({"type": "convolutional", "filters": 2}), (6,))
    assert not hasattr(net.layers[0], "dropout")


def test_required_key_from_net_defaults():
    # a required key may come from net.<type>; a layer's own key overrides it
    config = {
        "net": {"convolutional": {"filters": 3, "kernel": 5}},
        "layers": [{"type": "convolutional"}, {"type": "convolutional", "filters": 4}],
    }
    net = build_network(config, (6,))
    assert net.layers[0].conv.out_channels == 3 and net.layers[0].conv.kernel_size == (5,)
    assert net.layers[1].conv.out_channels == 4 and net.layers[1].conv.kernel_size == (5,)


def test_bad_net_default_is_reported_once_at_its_key():
    config = {"net": {"convolutional": {"kernel": 0}}, "layers": [{"type": "convolutional", "filters": 2}] * 3}
    with pytest.raises(NetworkConfigError) as info:
        build_network(config, (6,))
    lines = str(info.value).splitlines()
    assert lines == ["network config: net.convolutional.kernel: must be > 0, but got 0"]


def test_bad_required_value_is_not_also_missing():
    with pytest.raises(NetworkConfigError) as info:
        build_network(_net({"type": "clone", "number": "two"}), (6,))
    assert str(info.value) == "network config: layers[0] (clone): number: expected int, but got str 'two'"


@pytest.mark.parametrize(("on", "off"), [(True, False), (1, 0), (1.0, 0.0)])
def test_fspnet_booleans_are_true_false_or_0_1(on, off):
    config = _net(
        {"type": "convolutional", "filters": 2, "batch_norm": on, "activation": off, "dropout": on},
        dropout_prob=0.1,
        checkpoints=off,
    )
    net = build_network(config, (6,))
    assert isinstance(net.layers[0].batch_norm, nn.BatchNorm1d)
    assert not hasattr(net.layers[0], "activation")
    assert net.layers[0].dropout.p == pytest.approx(0.1)


def test_defaults_are_fspnets():
    # the defaults FSP-Net's layer code uses, listed by the missing-key message
    with pytest.raises(
        NetworkConfigError,
        match=r"keys: type, filters \(required\), kernel=3, "
        r'stride=1, padding="same", dropout=true, batch_norm=false, activation=true$',
    ):
        build_network(_net({"type": "convolutional"}), (6,))
    net = build_network(_net({"type": "recurrent"}), (2, 6))
    gru = net.layers[0].gru.gru
    assert (gru.hidden_size, gru.num_layers, gru.bidirectional) == (1, 2, False)
    assert isinstance(gru, nn.GRU)
    net = build_network(_net({"type": "linear", "features": 3}), (6,))
    assert list(dict(net.layers[0].named_children())) == ["linear", "activation"]


@pytest.mark.parametrize("vocabulary", ["linear", "Linear"])
def test_null_net_section_means_defaults(vocabulary):
    net = build_network({"net": None, "layers": [{"type": vocabulary, "features": 2}]}, (3,))
    assert net.output_shape == (2,)


def test_config_round_trips(tmp_path):
    net = build_network(CASES["checkpoint"][0], (3,))
    path = tmp_path / "net.json"
    path.write_text(json.dumps(net.config))
    again = build_network(path, net.input_shape)
    again.load_state_dict(net.state_dict())
    x = torch.randn(2, 3)
    assert torch.equal(net(x), again(x))
    assert again.config == net.config


def test_config_is_copied():
    config = _net({"type": "linear", "features": 4})
    net = build_network(config, (3,))
    config["layers"].append({"type": "pool"})
    assert len(net.config["layers"]) == 1


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("layers", "input_shape", "match"),
    [
        (
            [{"type": "dense", "features": 4}],
            (3,),
            r"^network config: layers\[0\]: unknown type 'dense'; known types: linear, "
            r"convolutional, recurrent, .*checkpoint, gru, GRU$",
        ),
        (
            [{"type": "linear", "units": 4}],
            (3,),
            r"layers\[0\] \(linear\): units: unknown key; valid keys are features, factor, "
            r"dropout, batch_norm, activation$",
        ),
        (
            [{"type": "convolutional"}],
            (3,),
            r"layers\[0\] \(convolutional\): missing required key 'filters'; keys: type, "
            r"filters \(required\), kernel=3",
        ),
        (
            [{"type": "convolutional", "filters": "16"}],
            (3,),
            r"layers\[0\] \(convolutional\): filters: expected int, but got str '16'$",
        ),
        ([{"type": "convolutional", "filters": 0}], (3,), r"layers\[0\] \(convolutional\): filters: must be > 0, but got 0$"),
        (
            [{"type": "linear", "features": 2, "dropout": 2}],
            (3,),
            r"layers\[0\] \(linear\): dropout: must be true or false \(or FSP-Net's 0/1\), but got 2$",
        ),
        (
            [{"type": "convolutional", "filters": 2, "padding": "valid"}],
            (3,),
            r"layers\[0\] \(convolutional\): padding: must be 'same' or a non-negative integer, but got 'valid'$",
        ),
        (
            [{"type": "reshape", "output": []}],
            (3,),
            r"layers\[0\] \(reshape\): output: must be a non-empty list of integers, but got \[\]$",
        ),
        ([{"type": "reshape", "output": [3, "x"]}], (3,), r"layers\[0\] \(reshape\): output\.1: expected int, but got str 'x'$"),
        (
            [{"type": "squeeze", "squeeze": True}],
            (3,),
            r"layers\[0\] \(squeeze\): missing required key 'dim'; keys: type, squeeze \(required\), dim \(required\)$",
        ),
        (
            [{"type": "recurrent", "bidirectional": "max"}],
            (3,),
            r"layers\[0\] \(recurrent\): bidirectional: must be null, 'sum', 'mean' or 'concatenate', but got 'max'$",
        ),
        ([{"type": "linear"}], (3,), r"layers\[0\] \(linear\): give exactly one of 'features' or 'factor'"),
        (
            [{"type": "linear", "features": 4}, {"type": "shortcut", "layer": 5}],
            (3,),
            r"layers\[1\] \(shortcut\): layer 5 is out of range; it must be in \[-2, 1\]",
        ),
        (
            [{"type": "linear", "features": 4}, {"type": "shortcut", "layer": 0}],
            (3,),
            r"layers\[1\] \(shortcut\): cannot add shape \(3,\) from the network input to "
            r"shape \(4,\)",
        ),
        (
            [{"type": "linear", "features": 4}, {"type": "linear", "features": 5}, {"type": "shortcut", "layer": 1}],
            (3,),
            r"layers\[2\] \(shortcut\): cannot add shape \(4,\) from layers\[0\] to shape \(5,\)",
        ),
        (
            [{"type": "convolutional", "filters": 2}, {"type": "concatenate", "layer": 0}],
            (6,),
            r"layers\[1\] \(concatenate\): cannot concatenate shape \(6,\) from the network input "
            r"to shape \(2, 6\)",
        ),
        (
            [{"type": "reshape", "output": [3, -1]}],
            (8,),
            r"layers\[0\] \(reshape\): cannot reshape \(8,\) \(8 values\) to \[3, -1\]",
        ),
        (
            [{"type": "convolutional", "filters": 2, "stride": 2}],
            (8,),
            r"layers\[0\] \(convolutional\): padding 'same' needs stride 1, but got stride 2",
        ),
        (
            [{"type": "convolutional", "filters": 2, "kernel": 9, "padding": 0}],
            (8,),
            r"kernel 9 with padding 0 does not fit an input of length 8",
        ),
        ([{"type": "conv_upscale", "filters": 3}], (8,), r"layers\[0\] \(conv_upscale\): filters must be even"),
        ([{"type": "pool"}], (2, 2, 8), r"layers\[0\] \(pool\): needs an input of shape \[C, L\] or \[L\], but got \(2, 2, 8\)"),
        ([{"type": "extract", "number": 3}], (3,), r"cannot extract 3 values from a last axis of 3"),
        ([{"type": "linear", "features": 2, "batch_norm": True}], (2, 3), r"batch_norm needs a 1-D input, but got \(2, 3\)"),
    ],
)
def test_layer_errors(layers, input_shape, match):
    with pytest.raises(NetworkConfigError, match=match):
        build_network({"layers": layers}, input_shape)


def test_checkpoint_reference_without_checkpoints():
    config = _net({"type": "linear", "features": 4}, {"type": "shortcut", "layer": 0}, checkpoints=True)
    with pytest.raises(
        NetworkConfigError,
        match=r"layers\[1\] \(shortcut\): layer 0 refers to "
        r"no checkpoint; net.checkpoints is on and 0 checkpoint",
    ):
        build_network(config, (3,))


def test_every_key_error_is_reported_at_once():
    config = {"net": {"dropout_prob": 2, "speed": 1}, "layers": [{"type": "linear", "units": 4}, {"type": "pooling"}], "extra": 1}
    with pytest.raises(NetworkConfigError) as info:
        build_network(config, (3,))
    message = str(info.value)
    for part in (
        "extra: unknown key; valid keys are net, layers",
        "net.dropout_prob: must be in [0, 1), but got 2.0",
        "net.speed: unknown key; valid keys are description, dropout_prob, checkpoints, "
        "linear, convolutional, ",  # ... and every layer type, holding defaults for it
        "layers[0] (linear): units: unknown key",
        "layers[1]: unknown type 'pooling'",
    ):
        assert part in message


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_net({"type": "linear", "features": 4}, {"type": "skip", "layer": -9})))
    with pytest.raises(
        NetworkConfigError,
        match=rf"^{path}: layers\[1\] \(skip\): layer -9 is "
        "out of range",
    ):
        build_network(path, (3,))
    path.write_text('{"layers": [}')
    with pytest.raises(NetworkConfigError, match=rf"^{path}: not valid JSON at line 1, column"):
        build_network(str(path), (3,))
    with pytest.raises(NetworkConfigError, match=r"missing\.json: cannot read network config"):
        build_network(tmp_path / "missing.json", (3,))


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ([], r"^network config: expected a JSON object with 'net' and 'layers', but got list"),
        ({"net": {}}, r"layers: expected a list of layer objects, but got nothing"),
        ({"layers": ["linear"]}, r"layers\[0\]: expected an object with a 'type' key"),
        (
            {"net": {"linear": {"size": 1}}, "layers": []},
            r"net\.linear\.size: unknown key; valid keys are features, factor, dropout",
        ),
        ({"net": {"linear": 3}, "layers": []}, r"net\.linear: expected a mapping, but got int 3"),
        (
            {"net": {"checkpoints": "yes"}, "layers": []},
            r"net\.checkpoints: must be true or false \(or FSP-Net's 0/1\), but got 'yes'",
        ),
    ],
)
def test_config_structure_errors(config, match):
    with pytest.raises(NetworkConfigError, match=match):
        build_network(config, (3,))


@pytest.mark.parametrize("shape", [(), (0,), (3.0,), 5])
def test_bad_input_shape(shape):
    with pytest.raises(
        NetworkConfigError,
        match=r"input_shape must be a non-empty tuple of "
        "positive integers",
    ):
        build_network(_net({"type": "linear", "features": 2}), shape)


def test_error_is_a_value_error():
    with pytest.raises(ValueError):
        build_network(_net({"type": "nope"}), (3,))


@pytest.mark.parametrize("factor", [float("inf"), float("nan")])
def test_non_finite_factor_is_refused_by_name(factor):
    # inf used to pass the check and end in an OverflowError while sizing the layer.
    with pytest.raises(NetworkConfigError, match=r"layers\[0\] \(linear\): factor: must be a finite number, but got"):
        build_network(_net({"type": "linear", "factor": factor}), (6,), (4,))


def test_in_place_activations_keep_outputs_and_gradients():
    """SELU/ELU after a layer run in place (their backward then reads the result instead of
    recomputing exp); outputs and gradients are those of out-of-place activations."""
    from fspnet.nets import decoder_config

    torch.manual_seed(0)
    net = build_network(decoder_config(), (5,), (240,)).double()
    acts = [m for m in net.modules() if isinstance(m, torch.nn.SELU)]  # the linear layers' (not the GRU's ELU)
    assert len(acts) == 6 and all(m.inplace for m in acts)
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)

    def run() -> tuple[torch.Tensor, ...]:
        net.zero_grad(set_to_none=True)
        x.grad = None
        out = net(x)
        (out**2).sum().backward()
        return (out.detach(), x.grad.clone(), *(p.grad.clone() for p in net.parameters()))

    fast = run()
    for m in acts:
        m.inplace = False
    for a, b in zip(fast, run()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
