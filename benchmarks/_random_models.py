"""Random plain Keras models of the MicroNets backbones, for the benchmarks."""

import tf_keras as keras

L = keras.layers


def ds_cnn(rng, input_shape=(49, 10, 1), classes=12):
    """A random DS-CNN: a strided conv, depthwise-separable blocks, average pooling, dense."""
    inputs = keras.Input(input_shape)
    width = int(rng.choice([16, 32, 48, 64, 96, 112, 144, 172, 196, 276]))
    x = L.Conv2D(width, (10, 4), strides=(2, 2), padding="same")(inputs)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(int(rng.integers(1, 6))):
        x = L.DepthwiseConv2D(3, padding="same")(x)
        x = L.ReLU()(L.BatchNormalization()(x))
        width = int(rng.choice([16, 32, 48, 64, 96, 112, 144, 172, 196, 276]))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(width, 1)(x)))
    if rng.random() < 0.5:
        x = L.GlobalAveragePooling2D()(x)
    else:
        x = L.Flatten()(L.AveragePooling2D(pool_size=x.shape[1:3])(x))
    x = L.Dropout(0.2)(x)
    return keras.Model(inputs, L.Softmax()(L.Dense(classes)(x)))


def mobilenet_v2(rng, input_shape=(50, 50, 3), classes=2):
    """A random MobileNetV2-like model: inverted bottlenecks with residual adds."""
    inputs = keras.Input(input_shape)
    width = int(rng.choice([8, 16, 24]))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(width, 3, strides=2, padding="same")(
        inputs)))
    for _ in range(int(rng.integers(1, 5))):
        stride = int(rng.choice([1, 2]))
        out = int(rng.choice([8, 16, 24, 32, 48]))
        expand = int(rng.choice([1, 3, 6]))
        y = x
        if expand > 1:
            y = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(width * expand, 1)(y)))
        y = L.DepthwiseConv2D(3, strides=stride, padding="same")(y)
        y = L.ReLU(6.0)(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(out, 1)(y))
        x = L.Add()([x, y]) if stride == 1 and out == width else y
        width = out
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Softmax()(L.Dense(classes)(x)))


def fc_autoencoder(rng, input_dim=640):
    """A random fully connected autoencoder like the anomaly-detection baseline."""
    inputs = keras.Input((input_dim,))
    x = inputs
    widths = [int(rng.choice([32, 64, 128, 256])) for _ in range(int(rng.integers(1, 4)))]
    for width in widths + [8] + widths[::-1]:
        x = L.ReLU()(L.BatchNormalization()(L.Dense(width)(x)))
    return keras.Model(inputs, L.Dense(input_dim)(x))


GENERATORS = {"ds_cnn": ds_cnn, "mobilenet_v2": mobilenet_v2, "fc_autoencoder": fc_autoencoder}
