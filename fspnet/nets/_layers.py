"""Torch modules that the JSON layer types build on, beyond what ``torch.nn`` has."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fspnet.nets._gru import scalar_gru


class Reshape(nn.Module):
    """Reshape every sample to ``shape`` (the batch dimension is kept)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class AddChannel(nn.Module):
    """Give a 1-D sample [L] a single channel, [N, L] -> [N, 1, L]."""

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(1)


class PixelShuffle1d(nn.Module):
    """1-D pixel shuffle: [N, C*r, L] -> [N, C, L*r], output position ``l*r + i`` from channel
    block ``i`` (the 1-D analogue of ``torch.nn.PixelShuffle``)."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        n, c, length = x.shape
        x = x.view(n, self.factor, c // self.factor, length)  # [N, r, C, L]
        return x.permute(0, 2, 3, 1).reshape(n, c // self.factor, length * self.factor)


class Recurrent(nn.Module):
    """GRU over the length axis of [N, C, L]; returns [N, H', L].

    ``bidirectional`` is ``None`` (one direction), ``"sum"``, ``"mean"`` or ``"concatenate"``
    (H' = 2H). On a CPU with hidden size 1 and float32/64 data, the fast path of
    :mod:`fspnet.nets._gru` runs; elsewhere ``torch.nn.GRU`` (cuDNN on CUDA). Both use the
    same weights and give the same results.
    """

    def __init__(self, gru: nn.GRU, bidirectional: str | None) -> None:
        super().__init__()
        self.gru = gru
        self.bidirectional = bidirectional

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)  # [N, L, C]
        if (x.device.type == "cpu" and self.gru.hidden_size == 1
                and x.dtype in (torch.float32, torch.float64)):
            x = scalar_gru(self.gru, x)
        else:
            x = self.gru(x.contiguous())[0]  # [N, L, D*H]
        if self.bidirectional in ("sum", "mean"):
            x = x.view(*x.shape[:2], 2, -1)
            x = x.sum(dim=2) if self.bidirectional == "sum" else x.mean(dim=2)
        return x.transpose(1, 2)

    def extra_repr(self) -> str:
        return f"bidirectional={self.bidirectional!r}"


class Merge(nn.Module):
    """Combine the running tensor with the output of an earlier layer.

    ``source`` is an index into the network's list of outputs (0 is the network input).
    ``mode`` is ``"shortcut"`` (add), ``"concatenate"`` (along dim 1) or ``"skip"`` (replace).
    """

    def __init__(self, mode: str, source: int) -> None:
        super().__init__()
        self.mode = mode
        self.source = source

    def forward(self, x: Tensor, earlier: Tensor) -> Tensor:
        if self.mode == "shortcut":
            return x + earlier
        if self.mode == "concatenate":
            return torch.cat((x, earlier), dim=1)
        return earlier

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, source={self.source}"


class Extract(nn.Module):
    """Split off the first ``number`` values of the last axis into :attr:`extracted`."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number
        self.extracted: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self.extracted = x[..., : self.number]
        return x[..., self.number :]

    def extra_repr(self) -> str:
        return f"number={self.number}"
