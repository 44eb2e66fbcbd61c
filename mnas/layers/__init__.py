"""Searchable Keras layers: width by FBNetV2 channel masking, depth by a parallel skip.

A width-searchable layer holds one kernel of its widest choice and architecture logits
`alpha`, one per candidate width. Its output is multiplied by the soft mask
`m_c = sum_k p_k * 1[c < c_k]`, `p = softmax(alpha / temperature)` (with Gumbel noise while
training if asked), so channel `c` survives with the probability that the chosen width exceeds
it. `SearchableSkip` wraps a block and mixes it with a parameter-free skip path by its own
softmax, which searches depth. `SearchableInvertedBottleneck` is a MobileNetV2 stage: inverted
residual blocks with searched expansion widths, one searched output width shared by the stage
(so its residual adds keep matching widths), and skippable residual blocks.

Every searchable layer exposes `probabilities()`, `expected_width()` (for `SearchableSkip`, the
probability of keeping the block), `choice()` (the argmax), and `arch_weights`.

Example:

>>> import mnas
>>> import tf_keras as keras
>>> inputs = keras.Input((49, 10, 1))
>>> x = mnas.SearchableConv2D([8, 16], (10, 4))(inputs)
>>> x = mnas.SearchableSkip(mnas.SearchableDepthwiseSeparable([8, 16], strides=2))(x)
>>> x = keras.layers.GlobalAveragePooling2D()(x)
>>> model = keras.Model(inputs, keras.layers.Dense(12)(x))
>>> model.layers[1].choice() in (8, 16)
True

Modules: `base` (channel masks, width choices, the architecture mixins), `searchable` (conv,
depthwise-separable, dense, skip), `blocks` (inverted-bottleneck stages, depth decisions,
`searchable_layers`).
"""

from mnas.layers.base import (
    BN_MOMENTUM, CHANNEL_MULTIPLE, ArchitectureMixin, WidthSearchMixin, batch_norm,
    channel_mask, width_choices, with_channel_mask)
from mnas.layers.blocks import (
    SEARCHABLE_LAYERS, DepthDecision, SearchableInvertedBottleneck, searchable_layers)
from mnas.layers.searchable import (
    SearchableConv2D, SearchableDense, SearchableDepthwiseSeparable, SearchableSkip)

__all__ = [
    "BN_MOMENTUM", "CHANNEL_MULTIPLE", "SEARCHABLE_LAYERS", "ArchitectureMixin", "DepthDecision",
    "SearchableConv2D", "SearchableDense", "SearchableDepthwiseSeparable",
    "SearchableInvertedBottleneck", "SearchableSkip", "WidthSearchMixin", "batch_norm",
    "channel_mask", "searchable_layers", "width_choices", "with_channel_mask",
]
