"""Time per training step of the KWS supernet against the plain model of its widest choices.

The supernet is the MicroNets KWS space (49x10x1 input, 10x4 conv stem and 9 depthwise-separable
blocks of up to 276 channels, every block skippable), trained with the ResourceRegularizer in the
loop; the plain model has the widest choice everywhere and every block kept. Same random data,
batch 100, CPU. Prints the median step times and, last, `overhead_ratio=<x>`.

    python benchmarks/search_overhead.py [--steps 30] [--batch 100]
"""

import argparse
import time

import numpy as np

import mnas
import tf_keras as keras


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def step_time(model, x, y, batch, callbacks=()):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    timer = StepTimer()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[*callbacks, timer])
    return float(np.median(timer.times[3:]))  # The first steps include tracing.


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.steps * args.batch, 49, 10, 1)).astype("float32")
    y = rng.integers(0, 12, size=len(x))
    space = mnas.search_spaces.get("kws")
    supernet = space.build()
    plain = mnas.build(space.extreme(smallest=False))
    regularizer = mnas.ResourceRegularizer(device="STM32F746ZG")
    t_plain = step_time(plain, x, y, args.batch)
    t_super = step_time(supernet, x, y, args.batch, [regularizer])
    print(f"plain widest model: {t_plain * 1e3:.0f} ms/step")
    print(f"supernet + ResourceRegularizer: {t_super * 1e3:.0f} ms/step")
    print(f"overhead_ratio={t_super / t_plain:.3f}")


if __name__ == "__main__":
    main()
