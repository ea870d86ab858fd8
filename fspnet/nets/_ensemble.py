"""An ensemble of one network's trained seeds, used as one network: the mean of their outputs."""

from __future__ import annotations

import typing as tp

import torch
from torch import Tensor, nn

from fspnet.nets._network import Network


class Ensemble(nn.Module):
    """The mean output of several trainings of one network (e.g. the seeds of a final training).

    Seeds of one network err differently, so their mean errs less than each of them, at the
    members' summed inference time (the campaign's two encoder seeds: Γ 3.85 and 4.06 % of its
    range alone, 3.23 % together; ``docs/campaign.md``). Members share the network file, so
    ``config``, ``input_shape`` and ``output_shape`` are theirs.

    Example:
        >>> seeds = [build_network(cfg, (240,)) for _ in range(2)]  # doctest: +SKIP
        >>> Ensemble(seeds)(x).shape == seeds[0](x).shape  # doctest: +SKIP
        True
    """

    def __init__(self, members: tp.Sequence[Network]) -> None:
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        shapes = {(m.input_shape, m.output_shape) for m in members}
        if len(shapes) > 1:
            raise ValueError(f"ensemble members disagree on their input and output shapes: {sorted(shapes)}")
        super().__init__()
        self.members = nn.ModuleList(members)
        self.config = members[0].config
        self.input_shape = members[0].input_shape
        self.output_shape = members[0].output_shape

    def forward(self, x: Tensor) -> Tensor:
        """The members' mean: x [N, *input_shape] -> [N, *output_shape]."""
        return torch.stack([m(x) for m in self.members]).mean(0)
