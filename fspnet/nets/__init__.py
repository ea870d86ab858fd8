"""Networks built from JSON layer lists in FSP-Net's vocabulary.

A config is ``{"net": {...}, "layers": [{"type": ..., ...}, ...]}``; :func:`build_network`
turns it into a :class:`Network` for a given input shape and infers every layer's shape.
:func:`decoder_config` and :func:`encoder_config` generate configs from architecture knobs
for hyperparameter searches; without arguments they give ``network_configs/decoder.json``
(5 parameters -> 240 bins, 217,854 weights) and ``network_configs/encoder.json``
(240 bins -> 5 parameters, 142,173 weights).

``net`` keys: ``dropout_prob`` (0; probability for layers whose ``dropout`` is on),
``checkpoints`` (false; when true, ``layer`` in shortcut/concatenate/skip counts checkpoint
layers, 0 the first, -1 the latest), ``description``, and per-type defaults such as
``"convolutional": {"batch_norm": true}``.

Layer types and their keys (defaults after ``=``; shapes exclude the batch dimension;
[C, L] layers give a 1-D input [L] one channel first):

==================== ===========================================================================
``linear``           ``features`` or ``factor`` (x this layer's input size), ``dropout=false``,
                     ``batch_norm=false``, ``activation=true`` (SELU). Acts on the last axis.
``convolutional``    ``filters``, ``kernel=3``, ``stride=1``, ``padding='same'`` (or an int;
                     replicate padding), ``dropout=true``, ``batch_norm=false``,
                     ``activation=true`` (ELU). [C, L] -> [filters, L'].
``gru``              ``filters`` (hidden size) or ``factor`` (x input channels; default 1),
                     ``layers=2``, ``bidirectional=null`` ('sum', 'mean', 'concatenate'),
                     ``dropout=true`` (between GRU layers), ``batch_norm=false``,
                     ``activation=true`` (ELU). Runs along L: [C, L] -> [H or 2H, L].
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
``extract``          ``number``: the first ``number`` values of the last axis go to
                     ``Network.extraction``; the rest continue.
``concatenate``      ``layer``: join that output along the first axis (the others must match).
``shortcut``         ``layer``: add that output (residual; shapes must broadcast).
``skip``             ``layer``: continue from that output instead.
``checkpoint``       no keys. Marks this point for ``layer`` references when
                     ``net.checkpoints`` is on.
==================== ===========================================================================

Without checkpoints, ``layer`` indexes every output so far: 0 is the network input, ``i`` the
output of ``layers[i-1]``, ``-1`` the previous layer's output. ``dropout``, ``batch_norm`` and
``activation`` accept true/false or FSP-Net's 1/0.

Differences from FSP-Net: ``factor`` scales the layer's *input* size (FSP-Net scales the
network's output size, which this builder is not given); use ``features`` for a fixed size.
"""

from __future__ import annotations

from fspnet.nets._builder import LAYER_TYPES, Network, build_network
from fspnet.nets._templates import decoder_config, encoder_config

__all__ = ["LAYER_TYPES", "Network", "build_network", "decoder_config", "encoder_config"]
