"""relative_cost: a network's forward time over a reference's, robust to machine load."""

from __future__ import annotations

import statistics

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


def test_the_default_decoder_against_a_copy_of_itself_costs_one_within_the_timing_resolution():
    # a study constrains inference_cost <= 1.03: FSP-Net's own decoder has to pass it (it measured
    # 1.004 and failed <= 1.0 under the ratio of fastest times). Single measurements on a shared
    # 2-core CPU have strayed to 0.95 and 1.08 (CI, and three processes on two cores): the median
    # of three must sit at 1 within the constraint's resolution, and none stray past 15 %
    x = torch.rand(1000, 5)
    costs = [
        relative_cost(build_network(decoder_config(), (5,), (240,)), build_network(decoder_config(), (5,), (240,)), x)
        for _ in range(3)
    ]
    assert 0.97 < statistics.median(costs) < 1.03 and all(0.85 < c < 1.15 for c in costs), costs
