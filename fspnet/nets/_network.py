"""The :class:`Network` module that both JSON vocabularies build."""

from __future__ import annotations

import typing as tp

from torch import Tensor, nn

from fspnet.nets import _layers

Shape = tuple[int, ...]


class Network(nn.Module):
    """A network built from a JSON layer list by :func:`fspnet.nets.build_network`.

    Attributes:
        config: A self-contained copy of the config (``factor`` sizes resolved, composite
            layers inlined); write it to rebuild the same network from the input shape alone.
        input_shape: Shape of one input sample, without the batch dimension.
        output_shape: Shape of one output sample, without the batch dimension.
        layer_shapes: Output shape of every layer, in order.
        layers: One module per JSON layer, so ``layers[i]`` is the JSON's ``layers[i]``.
    """

    def __init__(
        self,
        layers: list[nn.Module],
        config: dict[str, tp.Any],
        input_shape: Shape,
        layer_shapes: list[Shape],
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.config = config
        self.input_shape = input_shape
        self.layer_shapes = layer_shapes
        self.output_shape = layer_shapes[-1] if layer_shapes else input_shape
        needed = {m.source for m in layers if isinstance(m, _layers.Merge)}
        # outputs that no later layer reads are not kept, so their memory can be freed early
        self._keep = [i + 1 in needed for i in range(len(layers))]
        self._keep_input = 0 in needed

    def forward(self, x: Tensor) -> Tensor:
        """Run the network on a batch: x [N, *input_shape] -> [N, *output_shape]."""
        outputs: dict[int, Tensor] = {0: x} if self._keep_input else {}
        for i, layer in enumerate(self.layers):
            if isinstance(layer, _layers.Merge):
                x = layer(x, outputs[layer.source])
            else:
                x = layer(x)
            if self._keep[i]:
                outputs[i + 1] = x
        return x

    @property
    def extraction(self) -> Tensor | None:
        """Values split off by the last ``extract`` layer in the latest forward pass."""
        for layer in reversed(self.layers):
            if isinstance(layer, _layers.Extract):
                return layer.extracted
        return None

    @property
    def kl_loss(self) -> Tensor | None:
        """KL divergence of the last ``sample`` layer in the latest forward pass, if any."""
        for layer in reversed(self.layers):
            for module in layer.modules():
                if isinstance(module, _layers.Sample):
                    return module.kl_loss
        return None
