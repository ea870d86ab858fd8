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
    """GRU (or LSTM/RNN) over the length axis of [N, C, L]; returns [N, H', L].

    ``bidirectional`` is ``None`` (one direction), ``"sum"``, ``"mean"`` or ``"concatenate"``
    (H' = 2H). On a CPU with hidden size 1 and float32/64 data, the fast path of
    :mod:`fspnet.nets._gru` runs; elsewhere ``torch.nn.GRU`` (cuDNN on CUDA). Both use the
    same weights and give the same results.
    """

    def __init__(self, gru: nn.RNNBase, bidirectional: str | None) -> None:
        super().__init__()
        self.gru = gru
        self.bidirectional = bidirectional

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)  # [N, L, C]
        if (
            isinstance(self.gru, nn.GRU)
            and x.device.type == "cpu"
            and self.gru.hidden_size == 1
            and x.dtype in (torch.float32, torch.float64)
        ):
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
    ``mode`` is ``"shortcut"`` (add), ``"concatenate"`` (along ``dim``, 1 = the first axis
    after the batch) or ``"skip"`` (replace).
    """

    def __init__(self, mode: str, source: int, dim: int = 1) -> None:
        super().__init__()
        self.mode = mode
        self.source = source
        self.dim = dim

    def forward(self, x: Tensor, earlier: Tensor) -> Tensor:
        if self.mode == "shortcut":
            return x + earlier
        if self.mode == "concatenate":
            return torch.cat((x, earlier), dim=self.dim)
        return earlier

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, source={self.source}, dim={self.dim}"


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


class Index(nn.Module):
    """Slice the last axis: ``x[..., number:]`` when ``greater``, else ``x[..., :number]``."""

    def __init__(self, number: int, greater: bool) -> None:
        super().__init__()
        self.number = number
        self.greater = greater

    def forward(self, x: Tensor) -> Tensor:
        return x[..., self.number :] if self.greater else x[..., : self.number]

    def extra_repr(self) -> str:
        return f"number={self.number}, greater={self.greater}"


class Squeeze(nn.Module):
    """Remove (``squeeze``) or add a size-1 axis ``dim`` (counted with the batch axis)."""

    def __init__(self, squeeze: bool, dim: int) -> None:
        super().__init__()
        self.squeeze = squeeze
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x.squeeze(self.dim) if self.squeeze else x.unsqueeze(self.dim)


class Clone(nn.Module):
    """Keep a copy of the first ``number`` values of the last axis in :attr:`cloned`."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number
        self.cloned: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self.cloned = x[..., : self.number].clone()
        return x


class Sample(nn.Module):
    """Variational sampling: mean and log-std from two linear layers, then a Gaussian draw.

    :attr:`kl_loss` holds the KL divergence to a unit Gaussian from the latest forward pass.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.mean = nn.Linear(in_features, out_features)
        self.log_std = nn.Linear(in_features, out_features)
        self.kl_loss: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        mean, log_std = self.mean(x), self.log_std(x)
        std = log_std.exp()
        self.kl_loss = 0.5 * torch.mean(mean**2 + std**2 - 2 * log_std - 1)
        return mean + std * torch.randn_like(std)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the leading sample axes (netloader's ``LayerNorm``): [N, C, L] is
    normalised over C for each position, a 1-D sample [F] over F."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(tuple(reversed(shape)))

    def forward(self, x: Tensor) -> Tensor:
        order = list(range(x.ndim - 1, 0, -1))
        return self.norm(x.permute(0, *order)).permute(0, *order)


class Scale(nn.Module):
    """Multiply by a learnt scale of shape ``shape``: the leading sample axes when ``first``
    (per channel), else the trailing ones."""

    def __init__(self, shape: tuple[int, ...], scale: float, first: bool = True) -> None:
        super().__init__()
        self.scale = nn.Parameter(scale * torch.ones(shape))
        self.first = first

    def forward(self, x: Tensor) -> Tensor:
        if not self.first:
            return self.scale * x
        order = list(range(x.ndim - 1, 0, -1))
        return (self.scale * x.permute(0, *order)).permute(0, *order)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero whole samples with probability ``prob``."""

    def __init__(self, prob: float) -> None:
        super().__init__()
        self.prob = prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.prob == 0:
            return x
        keep = 1 - self.prob
        mask = x.new_empty(x.shape[:1] + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep if keep else x * mask


class Pad(nn.Module):
    """Pad the last axis by ``(left, right)`` values in ``mode`` ('constant' is zeros)."""

    def __init__(self, pad: tuple[int, int], mode: str) -> None:
        super().__init__()
        self.pad = pad
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.pad(x, self.pad, mode=self.mode)
