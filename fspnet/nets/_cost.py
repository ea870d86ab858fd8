"""How much a network costs to run, relative to FSP-Net's default one of the same stage.

A study that tunes architectures needs an inference-time figure it can constrain (a found
decoder that is better but slower is not what a user asked for). Absolute timings on a shared
machine move with its load, so :func:`relative_cost` times both networks in alternation on the
same batch (the two runs of a pair see the same load) and takes the median of the pairs' ratios:
on a 2-core CPU with a training beside it, the default decoder against a copy of itself measures
1.00 with a spread of 1 % (the ratio of the two fastest times spread 2.5 %).

Example:
    >>> from fspnet.nets import build_network, decoder_config
    >>> net = build_network(decoder_config(gru=False), (5,), (240,))
    >>> ref = build_network(decoder_config(), (5,), (240,))
    >>> relative_cost(net, ref, torch.zeros(64, 5)) < 1.0   # no GRU: cheaper than the default
    True
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

__all__ = ["relative_cost"]


def _forward_s(net: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    net(x)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start


@torch.no_grad()
def relative_cost(net: nn.Module, reference: nn.Module, x: torch.Tensor, *, repeats: int = 31) -> float:
    """Forward time of ``net`` on ``x`` over that of ``reference`` (1.0: as fast; < 1: faster).

    Both run in eval mode on the same batch, one warm-up each, then ``repeats`` alternating
    pairs, every other pair in the opposite order (so neither network always runs second, on
    caches the other warmed); the median of the pairs' time ratios is returned. The training
    modes are restored.
    """
    modes = (net.training, reference.training)
    net.eval()
    reference.eval()
    try:
        _forward_s(net, x), _forward_s(reference, x)  # warm-up: allocations, lazy kernels
        pairs = []
        for i in range(repeats):
            if i % 2 == 0:
                a, b = _forward_s(net, x), _forward_s(reference, x)
            else:
                b, a = _forward_s(reference, x), _forward_s(net, x)
            pairs.append((a, b))
    finally:
        net.train(modes[0])
        reference.train(modes[1])
    return statistics.median(a / max(b, 1e-9) for a, b in pairs)
