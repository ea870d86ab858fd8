"""relative_cost: a network's forward time over a reference's, robust to machine load."""

from __future__ import annotations

import torch

from fspnet.nets import build_network, decoder_config, relative_cost


def test_a_single_linear_layer_costs_a_small_fraction_of_the_default_gru_decoder():
    small = torch.nn.Linear(5, 240)
    default = build_network(decoder_config(), (5,), (240,))
    default.train()
    cost = relative_cost(small, default, torch.rand(256, 5))
    assert 0 < cost < 0.5  # the GRU over 240 bins dominates the default's time by far
    assert relative_cost(default, small, torch.rand(256, 5)) > 2
    assert default.training and small.training  # modes restored


def test_the_ratio_of_fastest_times_is_near_one_for_the_same_network():
    net = build_network(decoder_config(gru=False), (5,), (240,))
    assert 0.3 < relative_cost(net, net, torch.rand(512, 5), repeats=7) < 3
