"""fspnet.nets.Ensemble: several trainings of one network used as one (the mean of their outputs)."""

from __future__ import annotations

import pytest
import torch

from fspnet.nets import Ensemble, build_network, encoder_config


def test_the_mean_of_the_members_with_their_shapes():
    torch.manual_seed(0)
    a, b = (build_network(encoder_config(conv_blocks=2), (240,), (5,)).eval() for _ in range(2))
    ensemble = Ensemble([a, b])
    x = torch.randn(4, 240)
    with torch.no_grad():
        assert torch.allclose(ensemble(x), (a(x) + b(x)) / 2)
    assert ensemble.input_shape == (240,) and ensemble.output_shape == a.output_shape
    assert ensemble.config == a.config
    assert sum(p.numel() for p in ensemble.parameters()) == 2 * sum(p.numel() for p in a.parameters())


def test_refuses_one_member_and_members_of_other_shapes():
    a = build_network(encoder_config(conv_blocks=2), (240,), (5,))
    with pytest.raises(ValueError, match=r"at least two members, got 1"):
        Ensemble([a])
    with pytest.raises(ValueError, match=r"disagree on their input and output shapes"):
        Ensemble([a, build_network(encoder_config(conv_blocks=2), (120,), (5,))])
