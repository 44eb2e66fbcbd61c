"""What searchable layers share: channel masks, width choices, argument checks and the
architecture mixins (logits, temperature, gate, probabilities)."""

import numpy as np
import tensorflow as tf
import tf_keras as keras

CHANNEL_MULTIPLE = 4  # CMSIS-NN kernels are much faster on channel counts divisible by 4.

# Moving averages of batch norm follow the batch statistics within ~10 steps. Keras's default of
# 0.99 needs hundreds, more than a short schedule on a small dataset has, and a model evaluated
# with unsettled statistics (validation, conversion) is far off its training accuracy.
BN_MOMENTUM = 0.9



def _nhwc(layer, input_shape):
    """`input_shape` as a `TensorShape`, checked to be 4D (NHWC) for `layer`."""
    input_shape = tf.TensorShape(input_shape)
    if input_shape.rank != 4:
        raise ValueError(
            f"Invalid input to `{type(layer).__name__}` {layer.name!r}: expected a 4D (NHWC) "
            f"input, received shape {input_shape}.")
    return input_shape

def with_channel_mask(outputs, mask):
    """Attaches the soft channel mask that made `outputs` to it, for the layers it feeds.

    A depthwise convolution followed by batch normalisation works channel by channel, so in
    training mode the normalisation undoes a mask applied to its input: the masked channels
    come back at full scale, and the accuracy loss no longer sees the width decision that
    masked them. A layer of that kind reads the mask with `channel_mask` and applies it again
    after its normalisation, as the derived model, which has no such channels, computes.
    """
    outputs._mnas_channel_mask = mask  # noqa: SLF001  (a tensor attribute, like _keras_mask)
    return outputs


def channel_mask(inputs):
    """The soft channel mask attached to `inputs` by the layer that made it, or None."""
    return getattr(inputs, "_mnas_channel_mask", None)


def batch_norm(name=None):
    """A BatchNormalization layer with mnas's momentum; built under a distribution strategy, its
    batch statistics are over the global batch (every replica's), as on one device."""
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=name,
                                           synchronized=tf.distribute.has_strategy())


def width_choices(max_width, steps=10, multiple=CHANNEL_MULTIPLE):
    """Candidate widths: `steps` even fractions of `max_width`, rounded to `multiple`.

    The default gives 10%, 20%, ..., 100% of `max_width` in multiples of 4, as in MicroNets.

    Args:
        max_width: The widest choice.
        steps: How many fractions. Defaults to `10`.
        multiple: Round each width to a multiple of this. Defaults to `4`.

    Returns:
        A sorted list of distinct positive ints ending at `max_width` (rounded).

    Example:

    >>> width_choices(276)
    [28, 56, 84, 112, 140, 164, 192, 220, 248, 276]
    """
    if not isinstance(max_width, (int, np.integer)) or max_width < multiple:
        raise ValueError(
            f"Invalid value for `max_width`: expected an int of at least {multiple}, "
            f"received {max_width!r}.")
    widths = {max(multiple, int(np.floor(max_width * i / steps / multiple + 0.5)) * multiple)
              for i in range(1, steps + 1)}
    return sorted(widths)


def _check_choices(choices, name="choices"):
    if isinstance(choices, (int, np.integer)):
        choices = [choices]
    try:
        choices = [int(c) for c in choices]
    except (TypeError, ValueError):
        raise ValueError(
            f"Invalid value for `{name}`: expected a sorted list of positive ints, "
            f"received {choices!r}.") from None
    if not choices:
        raise ValueError(
            f"Invalid value for `{name}`: expected a non-empty sorted list of positive ints, "
            f"received [].")
    if min(choices) <= 0:
        raise ValueError(
            f"Invalid value for `{name}`: expected positive widths, received {choices}.")
    if any(a >= b for a, b in zip(choices, choices[1:])):
        raise ValueError(
            f"Invalid value for `{name}`: expected strictly increasing widths, "
            f"received {choices}.")
    return choices


def _check_temperature(temperature):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            temperature > 0):
        raise ValueError(
            f"Invalid value for `temperature`: expected a number > 0, received {temperature!r}.")
    return float(temperature)


class ArchitectureMixin:
    """What every searchable layer shares: logits, temperature, gate, probabilities.

    `arch_gate` (0 or 1, not trained) lets a callback freeze the architecture without retracing
    the training step: gradients reach `alpha` multiplied by it.
    """

    def _init_arch(self, num_options, temperature, gumbel):
        self.temperature_init = _check_temperature(temperature)
        self.gumbel = bool(gumbel)
        self.num_options = num_options
        if self.gumbel:
            # Its own generator, seeded from NumPy's (set by `keras.utils.set_random_seed`):
            # `mnas.reproducible.EpochRandomness` resets it from (seed, epoch), so a resumed
            # search draws the same noise.
            self.noise_generator = tf.random.Generator.from_seed(np.random.randint(2**31))

    def _build_arch(self, prefix=""):
        # Distinct names keep a wrapper's weights apart from its block's in HDF5 files.
        self.alpha = self.add_weight(
            name=prefix + "alpha", shape=(self.num_options,), initializer="zeros", trainable=True)
        self.temperature = self.add_weight(
            name=prefix + "temperature", shape=(),
            initializer=keras.initializers.Constant(self.temperature_init), trainable=False)
        self.arch_gate = self.add_weight(
            name=prefix + "arch_gate", shape=(), initializer="ones", trainable=False)

    @property
    def arch_weights(self):
        """The architecture logits, as a list (what an optimizer trains)."""
        return [self.alpha]

    def _gated_alpha(self):
        frozen = tf.stop_gradient(self.alpha)
        return frozen + self.arch_gate * (self.alpha - frozen)

    def probabilities(self, training=False):
        """Softmax of the logits over the temperature (with Gumbel noise when training)."""
        logits = self._gated_alpha()
        if training and self.gumbel:
            uniform = self.noise_generator.uniform(tf.shape(logits), 1e-6, 1.0 - 1e-6)
            logits = logits - tf.math.log(-tf.math.log(uniform))
        return tf.nn.softmax(logits / self.temperature)

    def _argmax(self):
        # Ties go to the later option (wider, or keep): without evidence, keep capacity.
        logits = keras.backend.get_value(self.alpha)
        return len(logits) - 1 - int(np.argmax(logits[::-1]))

    def _arch_config(self):
        return {"temperature": self.temperature_init, "gumbel": self.gumbel}


class WidthSearchMixin(ArchitectureMixin):
    """Channel masking over `choices` widths of one kernel of the widest choice."""

    def _init_width(self, choices, temperature, gumbel):
        self.choices = _check_choices(choices)
        self._init_arch(len(self.choices), temperature, gumbel)
        self.max_width = self.choices[-1]
        # masks[k, c] = 1 if channel c is kept by choice k.
        self._masks = (np.arange(self.max_width)[None, :] <
                       np.array(self.choices)[:, None]).astype("float32")

    def expected_width(self):
        """Expected number of output channels, sum_k p_k c_k (a differentiable scalar)."""
        return tf.tensordot(self.probabilities(), tf.constant(self.choices, tf.float32), 1)

    def choice(self):
        """The width the layer would choose: the argmax of its logits."""
        return self.choices[self._argmax()]

    def mask_vector(self, training=False):
        """The soft channel mask, sum_k p_k * 1[c < c_k], one value per channel."""
        return tf.tensordot(self.probabilities(training), tf.constant(self._masks), 1)

    def _mask(self, outputs, training):
        mask = tf.cast(self.mask_vector(training), outputs.dtype)
        return with_channel_mask(outputs * mask, mask)


def _activation_name(activation):
    if activation is None:
        return None
    if isinstance(activation, str):
        keras.activations.get(activation)  # Raises on an unknown name.
        return activation
    raise ValueError(
        f"Invalid value for `activation`: expected a name such as 'relu' or None, "
        f"received {activation!r}.")


def _pair(value, name):
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(
            f"Invalid value for `{name}`: expected a positive int or a pair of them, "
            f"received {value!r}.")
    return value


def _padding(padding):
    if padding not in ("same", "valid"):
        raise ValueError(
            f"Invalid value for `padding`: expected 'same' or 'valid', received {padding!r}.")
    return padding
