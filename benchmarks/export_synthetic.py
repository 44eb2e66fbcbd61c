"""Float vs int8 accuracy after QAT and PTQ, and TFLite vs TFLite Micro output agreement.

A DS-CNN (the MLPerf Tiny KWS reference layout, 64 channels, 4 depthwise-separable blocks) is
trained on a learnable synthetic task shaped like keyword spotting features (49x10x1, 12
classes: one fixed pattern per class plus Gaussian noise), then quantized both ways and run in
the TFLite Micro interpreter over the test set.

Usage: python benchmarks/export_synthetic.py [OUT_DIR]
"""

import mnas  # noqa: F401, I001  (selects Keras 2 before TensorFlow is imported)
import sys
import tempfile
import time

import numpy as np
import tf_keras as keras

from mnas import export, report
from mnas.deploy import verify as mverify

SHAPE, CLASSES = (49, 10, 1), 12


def synthetic(n, seed, noise=1.5):
    patterns = np.random.default_rng(123).normal(size=(CLASSES,) + SHAPE)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    return (patterns[y] + noise * rng.normal(size=(n,) + SHAPE)).astype(np.float32), y


def ds_cnn(width=64, blocks=4):
    layers = keras.layers
    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(width, (10, 4), strides=2, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for _ in range(blocks):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.Conv2D(width, 1, use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Softmax()(layers.Dense(CLASSES)(x)))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    keras.utils.set_random_seed(0)
    x, y = synthetic(4000, seed=1)
    x_test, y_test = synthetic(1000, seed=2)
    model = ds_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    start = time.time()
    model.fit(x, y, epochs=15, batch_size=100, verbose=0)
    print(f"float training: {time.time() - start:.0f} s")
    start = time.time()
    ptq = export.convert_int8(model, x)
    print(f"PTQ conversion: {time.time() - start:.0f} s, {len(ptq)} bytes")
    start = time.time()
    qat_model = export.quantize_qat(model, (x, y), epochs=2, batch_size=100)
    qat = export.convert_int8(qat_model, x)
    print(f"QAT fine-tuning (2 epochs) and conversion: {time.time() - start:.0f} s, "
          f"{len(qat)} bytes")
    for name, data in (("PTQ", ptq), ("QAT", qat)):
        result = mverify.verify(data, x_test, y_test, float_model=model)
        fit = export.check_fit(data, "STM32F446RE")
        print(f"{name}: float accuracy {result.float:.4f}, int8 accuracy (TFLite Micro) "
              f"{result.int8:.4f}, TFLite vs TFLite Micro: max diff {result.max_diff_steps} "
              f"steps, {result.mismatch_fraction:.2%} of outputs differ; arena "
              f"{fit.arena_bytes} bytes, fits STM32F446RE: {fit.fits}")
    export.write_c_sources(qat, out_dir, name="kws", labels=[f"class{i}" for i in range(12)])
    report.write_report(out_dir, task="kws", architecture=model, fit=fit, verification=result,
                        quantization="qat")
    print(f"files written to {out_dir}")


if __name__ == "__main__":
    main()
