"""Supernets of the MicroNets search spaces.

- `kws`: keyword spotting on 49x10x1 MFCCs. DS-CNN(L) with 4 more blocks: a 10x4 conv stem and 9
  depthwise-separable blocks (the first with stride 2), every block skippable, widths 10%-100%
  of 276 in multiples of 4, then global average pooling and a 12-way classifier.
- `ad`: anomaly detection (machine-ID classification) on 32x32x1 log-mels. A 3x3 conv stem and
  6 depthwise-separable blocks with strides 2, 1, 1, 1, 2, 2, every block skippable, widths up
  to 276, 4 machine IDs.

Example:

>>> from mnas import search_spaces
>>> space = search_spaces.get("kws", max_width=64, num_blocks=3)
>>> supernet = space.build()
>>> spec = space.sample(np.random.default_rng(0))
"""

import dataclasses

import numpy as np
import tf_keras as keras

from mnas import arch, errors, layers


@dataclasses.dataclass
class SearchSpace:
    """A MicroNets-style supernet: conv stem, skippable DS blocks, GAP, classifier.

    Attributes:
        name: The space's name.
        input_shape: Input shape without the batch axis.
        num_classes: Classifier outputs.
        stem_kernel: Kernel of the stem conv.
        strides: Stride of each depthwise-separable block.
        max_width: Widest choice of every layer.
        steps: Number of width choices (10%, 20%, ... of `max_width`).
        dropout: Dropout rate before the classifier.
        backbone: Backbone family, for latency models.
    """

    name: str
    input_shape: tuple
    num_classes: int
    stem_kernel: tuple
    strides: tuple
    max_width: int = 276
    steps: int = 10
    dropout: float = 0.1
    backbone: str = "ds_cnn"

    def __post_init__(self):
        self.choices = layers.width_choices(self.max_width, self.steps)
        self._supernet = None

    def build(self, temperature=1.0, gumbel=False):
        """A fresh supernet of this space (a functional `tf_keras` model)."""
        inputs = keras.Input(self.input_shape)
        x = layers.SearchableConv2D(self.choices, self.stem_kernel, temperature=temperature,
                                    gumbel=gumbel, name="stem")(inputs)
        for i, stride in enumerate(self.strides):
            block = layers.SearchableDepthwiseSeparable(
                self.choices, strides=stride, temperature=temperature, gumbel=gumbel,
                name=f"ds{i}")
            x = layers.SearchableSkip(block, temperature=temperature, gumbel=gumbel,
                                      name=f"skip{i}")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        if self.dropout:
            x = keras.layers.Dropout(self.dropout, name="dropout")(x)
        x = keras.layers.Dense(self.num_classes, name="classifier")(x)
        outputs = keras.layers.Softmax(name="softmax")(x)
        model = keras.Model(inputs, outputs, name=f"{self.name}_supernet")
        model.mnas_backbone = self.backbone
        return model

    def sample(self, rng):
        """A random architecture of this space, as an `ArchSpec`."""
        if self._supernet is None:
            self._supernet = self.build()
        arch.random_one_hot(self._supernet, rng)
        return arch.derive(self._supernet, name=f"{self.name}_sample")

    def extreme(self, smallest=True):
        """The smallest (every block skipped, narrowest widths) or largest architecture."""
        if self._supernet is None:
            self._supernet = self.build()
        # Option 0 is the narrowest width, and "skip" for a skippable block.
        for layer in layers.searchable_layers(self._supernet):
            logits = np.zeros(layer.num_options, dtype="float32")
            logits[0 if smallest else -1] = 10.0
            layer.alpha.assign(logits)
        return arch.derive(self._supernet, name=f"{self.name}_{'min' if smallest else 'max'}")


def kws(max_width=276, num_blocks=9, num_classes=12, steps=10, dropout=0.1):
    """The keyword-spotting space (DS-CNN(L) + 4 blocks, 49x10x1 MFCC input)."""
    strides = tuple(2 if i == 0 else 1 for i in range(num_blocks))
    return SearchSpace("kws", (49, 10, 1), num_classes, (10, 4), strides, max_width, steps,
                       dropout)


def ad(max_width=276, num_blocks=6, num_classes=4, steps=10, dropout=0.1):
    """The anomaly-detection space (DS-CNN-L-like, 32x32x1 log-mel input, last two stride 2)."""
    strides = tuple(2 if i == 0 or i >= num_blocks - 2 else 1 for i in range(num_blocks))
    return SearchSpace("ad", (32, 32, 1), num_classes, (3, 3), strides, max_width, steps,
                       dropout)


SPACES = {"kws": kws, "ad": ad}


def get(name, **options):
    """A search space by name (`kws`, `ad`), with its builder's options.

    Raises:
        UnknownNameError: The name is not a search space.
    """
    if name not in SPACES:
        raise errors.UnknownNameError(
            f"Invalid value for `search_space`: expected one of {sorted(SPACES)}, "
            f"received {name!r}.")
    return SPACES[name](**options)
