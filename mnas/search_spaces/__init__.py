"""Supernets of the MicroNets search spaces.

- `kws`: keyword spotting on 49x10x1 MFCCs. DS-CNN(L) with 4 more blocks: a 10x4 conv stem and 9
  depthwise-separable blocks (the first with stride 2), every block skippable, widths 10%-100%
  of 276 in multiples of 4, then global average pooling and a 12-way classifier.
- `ad`: anomaly detection (machine-ID classification) on 32x32x1 log-mels. A 3x3 conv stem and
  6 depthwise-separable blocks with strides 2, 1, 1, 1, 2, 2, every block skippable, widths up
  to 276, 4 machine IDs.
- `vww`: visual wake words (person / no person) on 50x50x1 images. MobileNetV2 reduced for
  microcontrollers: a 3x3 stride-2 conv stem, inverted-bottleneck stages (each block's
  expansion width searched, one output width per stage, residual blocks skippable), a 1x1 head
  conv, global average pooling, dropout and a 2-way classifier. Widths 10%-100% of
  MobileNetV2's in multiples of 4.

Example:

>>> from mnas import search_spaces
>>> space = search_spaces.get("kws", max_width=64, num_blocks=3)
>>> supernet = space.build()
>>> spec = space.sample(np.random.default_rng(0))
"""

import dataclasses

import numpy as np
import tf_keras as keras

from mnas import arch, derivation, errors, layers, tasks


class _Sampling:
    """`sample` and `extreme` for a space with a `build()`.

    Option 0 of every decision is the narrowest width, or "skip" for a depth decision.
    """

    def _cached_supernet(self):
        if getattr(self, "_supernet", None) is None:
            self._supernet = self.build()
        return self._supernet

    def sample(self, rng):
        """A random architecture of this space, as an `ArchSpec`."""
        supernet = self._cached_supernet()
        with derivation.fixed_choices(supernet, derivation.random_picks(supernet, rng)):
            return arch.derive(supernet, name=f"{self.name}_sample")

    def extreme(self, smallest=True):
        """The smallest (every block skipped, narrowest widths) or largest architecture."""
        supernet = self._cached_supernet()
        picks = [0 if smallest else layer.num_options - 1
                 for layer in layers.searchable_layers(supernet)]
        with derivation.fixed_choices(supernet, picks):
            return arch.derive(supernet, name=f"{self.name}_{'min' if smallest else 'max'}")


@dataclasses.dataclass
class SearchSpace(_Sampling):
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
        stem_stride: Stride of the stem conv (DS-CNN's is 2). Defaults to `1`.
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
    stem_stride: int = 1

    def __post_init__(self):
        self.choices = layers.width_choices(self.max_width, self.steps)
        self._supernet = None

    def build(self, temperature=1.0, gumbel=False):
        """A fresh supernet of this space (a functional `tf_keras` model)."""
        inputs = keras.Input(self.input_shape)
        x = layers.SearchableConv2D(self.choices, self.stem_kernel, strides=self.stem_stride,
                                    temperature=temperature, gumbel=gumbel, name="stem")(inputs)
        for i, stride in enumerate(self.strides):
            block = layers.SearchableDepthwiseSeparable(
                self.choices, strides=stride, temperature=temperature, gumbel=gumbel,
                name=f"ds{i}")
            x = layers.SearchableSkip(block, temperature=temperature, gumbel=gumbel,
                                      name=f"skip{i}")(x)
        return _supernet(self, inputs, x)


def _supernet(space, inputs, x):
    """The supernet of `space`: its features `x` of `inputs`, then global average pooling,
    dropout, the classifier and softmax."""
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if space.dropout:
        x = keras.layers.Dropout(space.dropout, name="dropout")(x)
    x = keras.layers.Dense(space.num_classes, name="classifier")(x)
    outputs = keras.layers.Softmax(name="softmax")(x)
    model = keras.Model(inputs, outputs, name=f"{space.name}_supernet")
    model.mnas_backbone = space.backbone
    return model


def _check_stages(stages):
    if not stages:
        raise ValueError(
            "Invalid value for `stages`: expected at least one (t, c, n, s) tuple, received none.")
    checked = []
    for stage in stages:
        if (not isinstance(stage, (tuple, list)) or len(stage) != 4 or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                for v in stage)):
            raise ValueError(
                f"Invalid value for `stages`: expected (t, c, n, s) tuples of positive ints, "
                f"received {stage!r}.")
        checked.append(tuple(int(v) for v in stage))
    return tuple(checked)


@dataclasses.dataclass
class InvertedBottleneckSpace(_Sampling):
    """A MobileNetV2-style supernet: conv stem, inverted-bottleneck stages, head conv, GAP, FC.

    Every width is searched among `steps` fractions (10%, 20%, ...) of its MobileNetV2 width,
    in multiples of 4: the stem, each block's expansion (`t` times its input width), each
    stage's output (shared by its blocks, so residual adds match) and the head. Residual
    blocks (all but the first of a stage) can be skipped.

    Attributes:
        name: The space's name.
        input_shape: Input shape without the batch axis.
        num_classes: Classifier outputs.
        stem_width: Widest choice of the 3x3 stride-2 stem conv.
        stages: `(t, c, n, s)` per stage, as in MobileNetV2's table 2: expansion factor, widest
            output width, number of blocks, stride of the first block.
        head_width: Widest choice of the 1x1 head conv.
        max_width: Cap on every layer's widest choice, expansions included; None for none.
        steps: Number of width choices per layer.
        dropout: Dropout rate before the classifier.
        backbone: Backbone family, for latency models.
    """

    name: str
    input_shape: tuple
    num_classes: int
    stem_width: int
    stages: tuple
    head_width: int
    max_width: int | None = None
    steps: int = 10
    dropout: float = 0.2
    backbone: str = "mobilenet_v2"

    def __post_init__(self):
        self.stages = _check_stages(self.stages)
        self._supernet = None

    def _choices(self, width):
        width = int(width) if self.max_width is None else min(int(width), self.max_width)
        return layers.width_choices(width, self.steps)

    def build(self, temperature=1.0, gumbel=False):
        """A fresh supernet of this space (a functional `tf_keras` model)."""
        arch_args = {"temperature": temperature, "gumbel": gumbel}
        inputs = keras.Input(self.input_shape)
        x = layers.SearchableConv2D(self._choices(self.stem_width), 3, strides=2,
                                    activation="relu6", name="stem", **arch_args)(inputs)
        width = self.stem_width
        for i, (t, c, n, s) in enumerate(self.stages):
            expand = [self._choices(t * width)] + [self._choices(t * c)] * (n - 1)
            x = layers.SearchableInvertedBottleneck(
                self._choices(c), expand, strides=s, repeats=n, name=f"stage{i}",
                **arch_args)(x)
            width = c
        x = layers.SearchableConv2D(self._choices(self.head_width), 1, activation="relu6",
                                    name="head", **arch_args)(x)
        return _supernet(self, inputs, x)


def kws(max_width=276, num_blocks=9, num_classes=12, steps=10, dropout=0.1, stem_stride=1):
    """The keyword-spotting space (DS-CNN(L) + 4 blocks, 49x10x1 MFCC input).

    With `stem_stride=2` the stem is DS-CNN's strided one and the blocks keep stride 1, so
    that DS-CNN S/M/L (a strided stem, 4-5 blocks) are architectures of the space.
    """
    if stem_stride not in (1, 2):
        raise ValueError(
            f"Invalid value for `stem_stride`: expected 1 or 2, received {stem_stride!r}.")
    strides = tuple(2 if i == 0 and stem_stride == 1 else 1 for i in range(num_blocks))
    return SearchSpace("kws", (49, 10, 1), num_classes, (10, 4), strides, max_width, steps,
                       dropout, stem_stride=stem_stride)


def ad(max_width=276, num_blocks=6, num_classes=4, steps=10, dropout=0.1):
    """The anomaly-detection space (DS-CNN-L-like, 32x32x1 log-mel input, last two stride 2)."""
    strides = tuple(2 if i == 0 or i >= num_blocks - 2 else 1 for i in range(num_blocks))
    return SearchSpace("ad", (32, 32, 1), num_classes, (3, 3), strides, max_width, steps,
                       dropout)


# MobileNetV2's first five bottleneck stages (widths 16 to 96) for 50x50 inputs: the stem and
# three stride-2 stages take the image to 4x4, where the 160 and 320 stages and the 1280 head
# would mostly add flash. At most two blocks per stage (MobileNetV2 has 1, 2, 3, 4, 3): one
# skippable residual block each, a widest model of ~0.5 MB int8 flash and ~125 KB arena (like
# MicroNets' VWW models), and an epoch of the supernet over 4000 images in ~20 s on 2 cores.
VWW_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 2, 1))
VWW_STEM = 32
VWW_HEAD = 320


def vww(input_shape=(50, 50, 1), num_classes=2, max_width=None, num_blocks=None, steps=10,
        dropout=0.2, stages=VWW_STAGES, stem_width=VWW_STEM, head_width=VWW_HEAD):
    """The visual-wake-words space: MobileNetV2 inverted bottlenecks reduced for MCUs.

    Args:
        input_shape: Image shape. Defaults to `(50, 50, 1)` (MicroNets' small-MCU VWW input).
        num_classes: Classifier outputs. Defaults to `2` (no person, person).
        max_width: Cap on every layer's widest choice. Defaults to None (MobileNetV2's widths).
        num_blocks: Keep only the first this many blocks of `stages`. Defaults to all of them.
        steps: Width choices per layer (10%, 20%, ... of the widest). Defaults to `10`.
        dropout: Dropout rate before the classifier. Defaults to `0.2`.
        stages: `(t, c, n, s)` per stage. Defaults to `VWW_STAGES`.
        stem_width: Widest stem conv. Defaults to `32`.
        head_width: Widest head conv. Defaults to `320`.

    Returns:
        An `InvertedBottleneckSpace`.

    Example:

    >>> space = vww()
    >>> supernet = space.build()
    >>> supernet.output_shape
    (None, 2)
    """
    if max_width is not None and (isinstance(max_width, bool) or not isinstance(
            max_width, (int, np.integer)) or max_width < layers.CHANNEL_MULTIPLE):
        raise ValueError(
            f"Invalid value for `max_width`: expected an int of at least "
            f"{layers.CHANNEL_MULTIPLE}, received {max_width!r}.")
    stages = _check_stages(stages)
    total = sum(n for _, _, n, _ in stages)
    if num_blocks is not None and (isinstance(num_blocks, bool) or not isinstance(
            num_blocks, (int, np.integer)) or not 1 <= num_blocks <= total):
        raise ValueError(
            f"Invalid value for `num_blocks`: expected an int from 1 to {total}, received "
            f"{num_blocks!r}.")
    kept, left = [], total if num_blocks is None else num_blocks
    for t, c, n, s in stages:
        if left > 0:
            kept.append((t, c, min(n, left), s))
            left -= n
    return InvertedBottleneckSpace("vww", tuple(input_shape), num_classes, stem_width,
                                   tuple(kept), head_width, max_width, steps, dropout)


def get(name, **options):
    """The search space of task `name` (`kws`, `ad`, `vww`, or a task registered in
    `mnas.tasks`), with its builder's options.

    Raises:
        UnknownNameError: No task has that name.
    """
    if name not in tasks.TASKS:
        raise errors.UnknownNameError(
            f"Invalid value for `search_space`: expected one of {sorted(tasks.TASKS)}, "
            f"received {name!r}.")
    return tasks.TASKS[name].search_space(**options)
