"""Tests for the default networks and the decoder/encoder config generators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fspnet.errors import NetworkConfigError
from fspnet.nets import build_network, decoder_config, encoder_config

CONFIGS = Path(__file__).resolve().parents[3] / "network_configs"


def _weights(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_templates_equal_shipped_json():
    assert json.loads((CONFIGS / "decoder.json").read_text()) == decoder_config()
    assert json.loads((CONFIGS / "encoder.json").read_text()) == encoder_config()


def test_default_decoder():
    net = build_network(CONFIGS / "decoder.json", (5,))
    assert net.output_shape == (240,)
    # FSP-Net V10 decoder: 5 -> 120 -> 120 -> 240 (+2 residual 240s) -> GRU -> 240
    assert _weights(net) == 217_854
    assert abs(_weights(net) - 218_000) / 218_000 < 0.1
    gru = net.layers[9].gru
    assert (gru.gru.hidden_size, gru.gru.num_layers, gru.gru.bidirectional) == (1, 2, True)
    assert gru.bidirectional == "mean"
    x = torch.randn(4, 5, requires_grad=True)
    y = net(x)
    assert y.shape == (4, 240)
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_default_encoder():
    net = build_network(CONFIGS / "encoder.json", (240,))
    assert net.output_shape == (5,)
    assert _weights(net) == 142_173
    assert abs(_weights(net) - 140_000) / 140_000 < 0.1
    last = net.layers[-1]
    assert list(dict(last.named_children())) == ["linear"]  # no activation on the output
    x = torch.randn(4, 240, requires_grad=True)
    y = net(x)
    assert y.shape == (4, 5)
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_decoder_knobs():
    cfg = decoder_config(n_bins=32, width=16, dense_layers=1, residual_layers=1, gru=False, dropout_prob=0.1)
    net = build_network(cfg, (3,))
    assert net.output_shape == (32,)
    assert not any(layer["type"] == "gru" for layer in cfg["layers"])
    assert sum(bool(layer.get("dropout")) for layer in cfg["layers"]) == 3
    cfg = decoder_config(n_bins=16, gru_layers=1, gru_bidirectional=None, residual_layers=0)
    net = build_network(cfg, (3,))
    assert net.output_shape == (16,)
    assert not net.layers[3].gru.gru.bidirectional
    assert net(torch.randn(2, 3)).shape == (2, 16)


def test_encoder_knobs():
    cfg = encoder_config(
        conv_blocks=2, base_filters=8, kernel=5, batch_norm=True, n_params=3, dense_width=16, dense_layers=3, dropout_prob=0.2
    )
    assert [layer.get("filters") for layer in cfg["layers"][:4]] == [8, 8, 16, 16]
    net = build_network(cfg, (40,))
    assert net.output_shape == (3,)
    assert net(torch.randn(2, 40)).shape == (2, 3)
    cfg = encoder_config(filters=[4, 8, 8, 8], dense_layers=1)
    assert [layer["filters"] for layer in cfg["layers"][:8:2]] == [4, 8, 8, 8]
    assert not any(layer["type"] == "shortcut" for layer in cfg["layers"])
    assert build_network(cfg, (240,)).output_shape == (5,)


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (
            decoder_config,
            {"widht": 64},
            r"^decoder_config: unknown knob\(s\) 'widht'; valid knobs: n_bins=240, width=120, "
            r"dense_layers=2, residual_layers=2, gru=True, gru_layers=2, "
            r"gru_bidirectional='mean', dropout_prob=0.0$",
        ),
        (
            encoder_config,
            {"n_conv": 2},
            r"^encoder_config: unknown knob\(s\) 'n_conv'; valid knobs: n_params=5, filters=None, "
            r"conv_blocks=None, base_filters=None, max_filters=32, kernel=3",
        ),
        (
            decoder_config,
            {"width": 0},
            r"decoder_config: width must be a positive integer, "
            r"but got 0",
        ),
        (decoder_config, {"dense_layers": -1}, r"dense_layers must be a non-negative integer"),
        (decoder_config, {"gru": "yes"}, r"decoder_config: gru must be true or false"),
        (decoder_config, {"gru_bidirectional": "max"}, r"gru_bidirectional must be null"),
        (decoder_config, {"dropout_prob": 1.5}, r"dropout_prob must be a number in \[0, 1\)"),
        (
            encoder_config,
            {"filters": [16, 32], "conv_blocks": 2},
            r"encoder_config: give either filters or conv_blocks/base_filters, not both",
        ),
        (encoder_config, {"filters": [16, 0]}, r"filters must be a list of positive integers"),
        (encoder_config, {"conv_blocks": 0}, r"conv_blocks and base_filters must be positive"),
        (encoder_config, {"kernel": 2.5}, r"kernel must be a positive integer, but got 2.5"),
    ],
)
def test_knob_errors(factory, kwargs, match):
    with pytest.raises(NetworkConfigError, match=match):
        factory(**kwargs)


@pytest.mark.parametrize(("name", "input_shape"), [("decoder", (5,)), ("encoder", (240,))])
def test_default_networks_round_trip(tmp_path, name, input_shape):
    torch.manual_seed(0)
    net = build_network(CONFIGS / f"{name}.json", input_shape)
    path = tmp_path / "network.json"
    path.write_text(json.dumps(net.config))
    again = build_network(path, input_shape)
    again.load_state_dict(net.state_dict())
    x = torch.randn(3, *input_shape)
    net.eval()
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), rtol=0, atol=0)
