"""The training step of a search: the weights learn with the model's optimizer, the
architecture logits with their own (`ResourceRegularizer(arch_optimizer=...)`), on the same
batch or on held-out batches (first-order bilevel).
"""

import tensorflow as tf
import tf_keras as keras


def architecture_step(regularizer):
    """A `train_step` that updates the weights with the model's optimizer and the architecture
    logits with the regulariser's, on the same batch or on one of `arch_data`."""

    def train_step(data):
        model = regularizer.model
        arch_vars = regularizer.arch_variables
        arch_refs = {v.ref() for v in arch_vars}
        weights = [v for v in model.trainable_variables if v.ref() not in arch_refs]
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x, y, y_pred, sample_weight)
        iterator = regularizer._arch_iterator  # noqa: SLF001
        if iterator is None:
            grads = tape.gradient(loss, weights + arch_vars)
            weight_grads, arch_grads = grads[:len(weights)], grads[len(weights):]
        else:
            weight_grads = tape.gradient(loss, weights)
        model.optimizer.apply_gradients(
            (g, v) for g, v in zip(weight_grads, weights) if g is not None)

        def update_architecture():
            grads = arch_grads if iterator is None else held_out_gradients(model, iterator,
                                                                            arch_vars)
            regularizer.arch_optimizer.apply_gradients(
                (tf.zeros_like(v) if g is None else g, v) for g, v in zip(grads, arch_vars))
            return tf.constant(True)

        if tf.distribute.has_strategy():
            # Under a distribution strategy the optimizer's cross-replica merge cannot sit in a
            # `tf.cond`: the step is traced for the switch's current value instead, and traced
            # again when it flips (`on_epoch_begin`).
            regularizer._traced_per_switch = True  # noqa: SLF001
            if regularizer._step_enabled:  # noqa: SLF001
                update_architecture()
        else:
            tf.cond(regularizer._enabled > 0, update_architecture,  # noqa: SLF001
                    lambda: tf.constant(False))
        return model.compute_metrics(x, y, y_pred, sample_weight)

    return train_step


def held_out_gradients(model, iterator, variables):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(next(iterator))
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x, y, model(x, training=True), sample_weight)
    return tape.gradient(loss, variables)


def arch_optimizer(value, learning_rate):
    if value == "adam":
        return keras.optimizers.Adam(learning_rate, name="arch_adam")
    if value == "shared" or isinstance(value, keras.optimizers.Optimizer):
        return value
    raise ValueError(
        f"Invalid value for `arch_optimizer`: expected 'adam', 'shared' or a Keras optimizer, "
        f"received {value!r}.")
