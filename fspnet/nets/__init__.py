"""Networks built from JSON layer lists: FSP-Net's files load unchanged.

A config is ``{"net": {...}, "layers": [{"type": ..., ...}, ...]}``. :func:`build_network`
turns it into a :class:`Network` for a given input shape, infers every layer's shape and
checks the output against the shape the stage needs (``output_shape``: 240 bins for a
decoder, the parameters for an encoder), failing with the layers' real output shape.
Two vocabularies are read, told apart by their layer types:

* FSP-Net's own (lowercase types, below), as its original code built them, and
* netloader v3's (CamelCase: ``Linear``, ``Conv``, ``ConvDownscale``, ``Recurrent``,
  ``Composite``, ...), FSP-Net's later format, described in :mod:`fspnet.nets._netloader`.

:class:`Ensemble` averages the outputs of several trainings of one network (a final
training's seeds, used as one network).

:func:`decoder_config` and :func:`encoder_config` generate configs from architecture knobs
for hyperparameter searches; without arguments they give ``network_configs/decoder.json``
(5 parameters -> 240 bins, 217,854 weights) and ``network_configs/encoder.json``
(240 bins -> 5 parameters, 142,173 weights).

``net`` keys: ``dropout_prob`` (0; probability for layers whose ``dropout`` is on),
``checkpoints`` (false; when true, ``layer`` in shortcut/concatenate/skip counts checkpoint
layers, 0 the first, -1 the latest), ``description``, and per-type defaults such as
``"convolutional": {"batch_norm": true}``.

Layer types and their keys (defaults after ``=``; shapes exclude the batch dimension;
[C, L] layers give a 1-D input [L] one channel first). ``factor`` sizes a layer as
``int(factor x the last axis of output_shape)``, FSP-Net's rule:

==================== ===========================================================================
``linear``           ``features`` or ``factor``, ``dropout=false``, ``batch_norm=false``,
                     ``activation=true`` (SELU). Acts on the last axis.
``convolutional``    ``filters``, ``kernel=3``, ``stride=1``, ``padding='same'`` (or an int;
                     replicate padding), ``dropout=true``, ``batch_norm=false``,
                     ``activation=true`` (ELU). [C, L] -> [filters, L'].
``recurrent``        ``filters=1`` (hidden size, whatever the input channels), ``layers=2``,
                     ``method='gru'`` (or 'lstm', 'rnn'), ``bidirectional=null`` ('sum',
                     'mean', 'concatenate'), ``dropout=true`` (between layers),
                     ``activation=true`` (ELU, applied before the batch norm),
                     ``batch_norm=false``. Runs along L: [C, L] -> [H or 2H, L].
                     ``gru`` and ``GRU`` (older files) are the same layer.
``linear_upscale``   ``activation=true`` (SELU). Flatten, linear to twice the size:
                     [..., L] -> [..., 2L].
``conv_upscale``     ``filters`` (even), ``kernel=3``, ``batch_norm=false``,
                     ``activation=true``. Conv then pixel shuffle: [C, L] -> [filters/2, 2L].
``conv_transpose``   ``filters``, ``dropout=true``, ``batch_norm=false``, ``activation=true``.
                     Kernel 2, stride 2: [C, L] -> [filters, 2L].
``upsample``         no keys. Linear interpolation: [C, L] -> [C, 2L].
``conv_depth_downscale`` ``batch_norm=false``, ``activation=true``. 1x1 conv: [C, L] -> [1, L].
``conv_downscale``   ``filters``, ``dropout=true``, ``batch_norm=false``, ``activation=true``.
                     Kernel 3, stride 2, padding 1: [C, L] -> [filters, ceil(L/2)].
``pool``             no keys. Max pool of 2: [C, L] -> [C, floor(L/2)].
``reshape``          ``output`` (list, one -1 allowed), e.g. [-1] to flatten.
``index``            ``number``, ``greater=true``: keep ``x[..., number:]`` (or
                     ``x[..., :number]`` when ``greater`` is false).
``extract``          ``number``: the first ``number`` values of the last axis go to
                     ``Network.extraction``; the rest continue.
``clone``            ``number``: keep a copy of the first ``number`` values; passes x on.
``squeeze``          ``squeeze`` (true removes, false adds), ``dim``: a size-1 axis.
``sample``           ``features`` or ``factor``: variational sampling (mean and log-std
                     layers); ``Network.kl_loss`` holds the KL divergence.
``concatenate``      ``layer``, ``channel=true``: join that output along the first axis
                     (the last when ``channel`` is false; the others must match).
``shortcut``         ``layer``: add that output (residual; shapes must broadcast).
``skip``             ``layer``: continue from that output instead.
``checkpoint``       no keys. Marks this point for ``layer`` references when
                     ``net.checkpoints`` is on.
==================== ===========================================================================

Without checkpoints, ``layer`` indexes every output so far: 0 is the network input, ``i`` the
output of ``layers[i-1]``, ``-1`` the previous layer's output. ``dropout``, ``batch_norm`` and
``activation`` accept true/false or FSP-Net's 1/0.

Differences from FSP-Net's code, none of which changes a parameter count or an eval-mode
output: a ``linear`` layer's dropout is ``nn.Dropout`` (FSP-Net's ``nn.Dropout1d`` zeroes whole
samples of a [N, F] batch); ``Network.config`` is self-contained (``factor`` sizes resolved,
composite layers inlined) so a run directory rebuilds its network from the input shape alone.
"""

from __future__ import annotations

from fspnet.nets._builder import LAYER_TYPES, build_network
from fspnet.nets._cost import relative_cost
from fspnet.nets._ensemble import Ensemble
from fspnet.nets._netloader import LAYER_TYPES as NETLOADER_LAYER_TYPES
from fspnet.nets._network import Network
from fspnet.nets._templates import decoder_config, encoder_config

__all__ = [
    "LAYER_TYPES",
    "Ensemble",
    "NETLOADER_LAYER_TYPES",
    "Network",
    "build_network",
    "decoder_config",
    "encoder_config",
    "relative_cost",
]
