"""FSP-Net network files load unchanged: both vocabularies, original sizes, checked output.

The files under ``tests/data/fspnet_nets/`` were written for these tests in the style of
FSP-Net's ``network_configs/`` (not copied from it). ``fspnet_v1/`` uses FSP-Net's own
(pre-netloader) vocabulary, which netloader no longer reads: their parameter counts below are
derived by hand from FSP-Net's layer rules (``fspnet/utils/layers.py``): a linear layer has
in*out + out weights, a Conv1d in*out*k + out, a ConvTranspose1d in*out*2 + out, a batch norm
2*C, and one GRU direction of a layer with input I and hidden size H has 3*(H*I + H*H + 2*H);
``factor`` is int(factor * the network's output size) and a recurrent layer's hidden size is
1 unless ``filters`` says otherwise. ``netloader_v3/`` files are checked against netloader
itself in ``test_netloader_oracle.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from fspnet.errors import NetworkConfigError
from fspnet.nets import build_network

DATA = Path(__file__).parents[2] / "data" / "fspnet_nets"

# file: (input shape, output shape, parameter count derived by hand, layer output shapes)
FSPNET_V1 = {
    # 5 -> 60 (0.25 x 240): 5*60+60 = 360; 60 -> 120: 7,320; 120 -> 240: 29,040;
    # 240 -> 240: 57,840; bidirectional GRU, hidden 1, 2 layers: 2*3*(1+1+2) + 2*3*(2+1+2) = 54;
    # 240 -> 240: 57,840.  Total 152,454.
    "decoder_dense_gru": ((5,), (240,), 152_454, [(60,), (120,), (240,), (240,), (240,), (1, 240), (1, 240), (240,), (240,)]),
    # 5 -> 30: 180; conv 1->8 k3: 32 + batch norm 16; transpose 8->4: 64+4 = 68; upsample: 0;
    # conv 4->4 k3: 52 (pixel shuffle -> [2, 240]); GRU 2->2, 1 layer: 3*(4+4+4) = 36,
    # batch norm 4; 1x1 conv 2->1: 3.  Total 391.
    "decoder_upscale": ((5,), (240,), 391, [(30,), (1, 30), (8, 30), (4, 60), (4, 120), (2, 240), (2, 240), (1, 240), (240,)]),
    # input 240 bins + 2 extra values. conv 1->4 k3 s2: 16; conv 4->8 k5: 168 + batch norm 16;
    # GRU 8->1, 2 layers: 3*(8+1+2) + 3*(1+1+2) = 45; linear 62->16: 1,008; 16->10: 170;
    # sample 10->5 (mean and log-std): 2*(50+5) = 110.  Total 1,533.
    "encoder_index": (
        (242,),
        (5,),
        1533,
        [(240,), (1, 240), (4, 120), (8, 120), (8, 60), (1, 60), (60,), (242,), (2,), (62,), (16,), (10,), (5,)],
    ),
    # 'GRU', the oldest spelling: 1->1, 2 layers: 24; conv 1->4 k7: 32; pool; conv 4->8 k3 s2
    # unpadded: 104, length (120-3)//2+1 = 59; linear 472->16: 7,568 + batch norm 32;
    # 16 -> 5 (1 x 5): 85.  Total 7,845.
    "encoder_gru_pool": ((240,), (5,), 7845, [(1, 240), (1, 240), (4, 240), (4, 120), (8, 59), (472,), (16,), (5,)]),
}


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", list(FSPNET_V1))
def test_fspnet_v1_files_load_with_fspnet_sizes(name):
    in_shape, out_shape, n_params, shapes = FSPNET_V1[name]
    net = build_network(DATA / "fspnet_v1" / f"{name}.json", in_shape, out_shape)
    assert _count(net) == n_params
    assert net.layer_shapes == shapes
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(3, *in_shape)).shape == (3, *out_shape)


def test_fspnet_v1_file_runs_in_training_mode():
    net = build_network(DATA / "fspnet_v1" / "encoder_index.json", (242,), (5,))
    x = torch.randn(4, 242)
    net(x).sum().backward()
    assert net.kl_loss is not None and torch.isfinite(net.kl_loss)


def test_factor_is_relative_to_the_output_shape():
    config = {"layers": [{"type": "linear", "factor": 0.5}, {"type": "linear", "factor": 1}]}
    net = build_network(config, (5,), (240,))
    assert net.layer_shapes == [(120,), (240,)]
    net = build_network(config, (240,), (10,))
    assert net.layer_shapes == [(5,), (10,)]


def test_factor_needs_the_output_shape():
    with pytest.raises(
        NetworkConfigError,
        match=r"layers\[0\] \(linear\): 'factor' sizes this "
        r"layer relative to the network's output, but no output_shape was given",
    ):
        build_network({"layers": [{"type": "linear", "factor": 1}]}, (5,))


def test_wrong_output_shape_fails_with_the_real_shape(tmp_path):
    # the example: an encoder that makes 120 values where the stage needs 5
    config = {"layers": [{"type": "linear", "features": 120}]}
    with pytest.raises(
        NetworkConfigError,
        match=r"^network config: the layers produce an output "
        r"of shape \[120\] per sample, but this network must produce \[5\]",
    ):
        build_network(config, (240,), (5,))
    path = tmp_path / "encoder.json"
    path.write_text(json.dumps({"layers": [{"type": "reshape", "output": [1, -1]}, {"type": "convolutional", "filters": 2}]}))
    with pytest.raises(
        NetworkConfigError,
        match=rf"^{path}: the layers produce an output of "
        r"shape \[2, 240\] per sample, but this network must produce \[5\]; "
        r"layer output shapes: \[\[1, 240\], \[2, 240\]\]",
    ):
        build_network(path, (240,), (5,))


def test_size_one_axes_fit_and_check_can_be_skipped():
    config = {"layers": [{"type": "linear", "factor": 1}, {"type": "reshape", "output": [1, -1]}]}
    assert build_network(config, (5,), (240,)).output_shape == (1, 240)
    config["layers"].append({"type": "concatenate", "layer": 0, "channel": 0})
    with pytest.raises(NetworkConfigError, match=r"produce an output of shape \[1, 245\]"):
        build_network(config, (1, 5), (240,))
    assert build_network(config, (1, 5), (240,), check_output=False).output_shape == (1, 245)


def test_output_shape_is_validated():
    with pytest.raises(
        NetworkConfigError,
        match=r"output_shape must be a non-empty tuple of "
        r"positive integers",
    ):
        build_network({"layers": [{"type": "linear", "features": 2}]}, (3,), (0,))


def test_resolved_config_rebuilds_without_the_output_shape(tmp_path):
    path = DATA / "fspnet_v1" / "decoder_dense_gru.json"
    net = build_network(path, (5,), (240,))
    original = json.loads(path.read_text())
    assert "factor" in original["layers"][0]
    assert net.config["layers"][0] == {"type": "linear", "features": 60}
    saved = tmp_path / "network.json"
    saved.write_text(json.dumps(net.config))
    again = build_network(saved, (5,))
    again.load_state_dict(net.state_dict())
    net.eval(), again.eval()
    x = torch.randn(2, 5)
    assert torch.equal(net(x), again(x))


def test_factor_from_net_defaults_resolves_too(tmp_path):
    config = {"net": {"linear": {"factor": 0.5}}, "layers": [{"type": "linear"}, {"type": "linear", "factor": 1}]}
    net = build_network(config, (5,), (8,))
    assert net.layer_shapes == [(4,), (8,)]
    assert net.config == {"net": {"linear": {}}, "layers": [{"type": "linear", "features": 4}, {"type": "linear", "features": 8}]}
    assert build_network(net.config, (5,)).layer_shapes == [(4,), (8,)]


def test_recurrent_activation_comes_before_batch_norm():
    # FSP-Net's recurrent layer applies ELU and then batch norm (other layers: norm first)
    net = build_network({"layers": [{"type": "recurrent", "batch_norm": 1}]}, (1, 8))
    names = [name for name, _ in net.layers[0].named_children()]
    assert names == ["gru", "activation", "batch_norm"]
    conv = build_network({"layers": [{"type": "convolutional", "filters": 2, "batch_norm": 1}]}, (8,))
    assert [n for n, _ in conv.layers[0].named_children()] == ["channel", "conv", "batch_norm", "activation"]


def test_recurrent_default_hidden_size_is_one_whatever_the_channels():
    net = build_network({"layers": [{"type": "recurrent"}]}, (8, 30))
    gru = net.layers[0].gru.gru
    assert (gru.input_size, gru.hidden_size, gru.num_layers) == (8, 1, 2)


def test_index_and_concatenate_compute_what_fspnet_does():
    net = build_network(DATA / "fspnet_v1" / "encoder_index.json", (242,), (5,))
    x = torch.randn(3, 242)
    assert torch.equal(net.layers[0](x), x[:, :-2])
    assert torch.equal(net.layers[8](x), x[:, -2:])


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        (
            [{"type": "index", "number": 6, "greater": 1}],
            r"layers\[0\] \(index\): number 6 with greater=True leaves nothing of a last axis of 6",
        ),
        ([{"type": "squeeze", "squeeze": 1, "dim": 1}], r"layers\[0\] \(squeeze\): cannot squeeze axis 1 of size 6"),
        (
            [{"type": "recurrent", "method": "transformer"}],
            r"layers\[0\] \(recurrent\): method: unknown 'transformer'; choose one of gru, lstm, rnn",
        ),
        ([{"type": "clone", "number": 9}], r"layers\[0\] \(clone\): number must be in \[1, 6\]"),
        ([{"type": "sample"}], r"layers\[0\] \(sample\): give exactly one of 'features' or"),
    ],
)
def test_fspnet_v1_layer_errors(layers, match):
    with pytest.raises(NetworkConfigError, match=match):
        build_network({"layers": layers}, (6,))


@pytest.mark.parametrize("name", ["fspnet_v1/decoder_dense_gru", "netloader_v3/decoder"])
def test_trainer_trains_and_reloads_an_fspnet_file(tmp_path, base_overrides, name):
    # the trainer passes the stage's output shape, so `factor` sizes resolve, and the run
    # directory's network.json rebuilds without it (or the composite/netloader files)
    from fspnet.config import load_config
    from fspnet.rundir import load_run
    from fspnet.train import train

    run_dir = tmp_path / "run"
    train(
        load_config(
            None, {**base_overrides, "decoder.network": str(DATA / f"{name}.json"), "training.epochs": 1, "run_dir": str(run_dir)}
        )
    )
    run = load_run(run_dir)
    assert run.network.output_shape == (240,)
    assert _count(run.network) == _count(build_network(DATA / f"{name}.json", (5,), (240,)))


def test_trainer_rejects_a_network_with_the_wrong_output(tmp_path, base_overrides):
    from fspnet.config import load_config
    from fspnet.errors import ConfigError
    from fspnet.train import train

    path = tmp_path / "encoder_v8_like.json"  # 120 outputs where the decoder needs 240 bins
    path.write_text(json.dumps({"layers": [{"type": "linear", "features": 120}]}))
    with pytest.raises(
        ConfigError,
        match=r"the layers produce an output of shape \[120\] per "
        r"sample, but this network must produce \[240\]",
    ):
        train(load_config(None, {**base_overrides, "decoder.network": str(path), "run_dir": str(tmp_path / "run")}))


# FSP-Net's own 22 files (EthanTreg/Spectrum-Machine-Learning, network_configs/), not shipped
# here: point FSPNET_NETWORK_CONFIGS at a checkout's network_configs/ folder to check them.
# name: (input, output shape the stage needs, parameters, output shape the layers produce).
# Counts of netloader files equal netloader 3.12.1's; the others follow FSP-Net's layer code.
ORIGINALS = {
    "Decoder": ((5,), (240,), 14_774, (240,)),
    "Decoder V2": ((5,), (240,), 9_067, (240,)),
    "Decoder V3": ((5,), (240,), 20_335, (240,)),
    "Decoder V4": ((5,), (240,), 9_069, (2, 240)),  # FSP-Net logged "output filters not reduced"
    "Decoder V5": ((5,), (240,), 2_001_376, (240,)),
    "Decoder V6": ((5,), (240,), 1_084_216, (240,)),
    "Decoder V7": ((5,), (240,), 1_084_126, (240,)),
    "Decoder V8": ((5,), (240,), 217_854, (240,)),
    "Decoder V9": ((5,), (240,), 222_528, (242,)),  # concatenates 2 latent values to 240 bins
    "Decoder V10": ((5,), (240,), 217_854, (1, 240)),
    "Encoder": ((240,), (5,), 254_741, (5,)),
    "Encoder V2": ((240,), (5,), 70_807, (5,)),
    "Encoder V3": ((240,), (5,), 153_031, (5,)),
    "Encoder V4": ((240,), (5,), 154_176, (5,)),
    "Encoder V5": ((240,), (5,), 153_031, (5,)),
    "Encoder V6": ((240,), (5,), 260_939, (5,)),
    "Encoder V7": ((240,), (5,), 202_515, (5,)),
    "Encoder V8": ((240,), (5,), 159_141, (5,)),
    "Encoder V9": ((242,), (5,), 159_381, (5,)),  # 240 bins + 2 values, split by index layers
    "Encoder V10": ((240,), (5,), 141_589, (5,)),
    "convnext": ((240,), (5,), 26_767_589, (5,)),
    "composite_layers/convnext_block": ((96, 60), (96, 60), 75_264, (96, 60)),
}


@pytest.mark.parametrize("name", list(ORIGINALS))
def test_fspnet_original_files(name):
    folder = os.environ.get("FSPNET_NETWORK_CONFIGS")
    if not folder:
        pytest.skip("FSPNET_NETWORK_CONFIGS (FSP-Net's network_configs/ folder) is not set")
    in_shape, out_shape, n_params, produced = ORIGINALS[name]
    path = Path(folder) / f"{name}.json"
    if _squeeze(produced) != _squeeze(out_shape):
        with pytest.raises(NetworkConfigError, match=r"the layers produce an output of shape"):
            build_network(path, in_shape, out_shape)
    net = build_network(path, in_shape, out_shape, check_output=False)
    assert _count(net) == n_params
    assert net.output_shape == produced


def _squeeze(shape):
    return tuple(d for d in shape if d != 1)
