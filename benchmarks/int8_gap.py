"""Where does a run's int8 model lose accuracy? Each step from float to int8, measured.

For a finished run of `python -m mnas.train` (its `train/model.keras`, `model.tflite` and
settings), prints the test metric of:

1. the float Keras model;
2. the float model on inputs rounded to the int8 model's input scale (input quantization only);
3. the model after post-training quantization, in TFLite Micro (PTQ);
4. the quantization-aware model in Keras (fake quantization), after the run's QAT epochs;
5. that model converted to int8, in TFLite Micro (what the run ships, re-made here).

Last line: `int8_gap_points=<x>`, float minus the run's own int8 figure, in points.

    python benchmarks/int8_gap.py --run_dir runs/kws_demo
"""

import mnas  # noqa: F401, I001
import json
import os

import numpy as np
from absl import app, flags

from mnas import export, job, runconfig
from mnas.deploy import verify as mverify
from mnas.hardware import tflm


def define_flags():
    flags.DEFINE_string("run_dir", "runs/kws_demo", "A finished run's output directory.")


def _accuracy(outputs, y):
    return float(np.mean(np.argmax(outputs, axis=-1) == y))


def _micro_accuracy(data, x, y):
    return mverify.verify(data, x, y).int8


def main(argv):
    del argv
    run_dir = flags.FLAGS.run_dir
    with open(os.path.join(run_dir, "state.json")) as f:
        config = job.Config(**json.load(f)["config"])
    run = job._Run(config, runconfig.check(config))  # noqa: SLF001
    splits = run.load_data()
    test, train = splits["test"], splits["train"]
    model = run.float_model()
    rows = [("float (Keras)", _accuracy(model.predict(test.x, verbose=0), test.y))]
    shipped = tflm.read_model(os.path.join(run_dir, "model.tflite"))
    runner = tflm.MicroRunner(shipped)
    rounded = tflm.dequantize(runner.quantize(test.x), runner.input_details)
    rows.append(("float, int8-rounded input", _accuracy(model.predict(rounded, verbose=0),
                                                          test.y)))
    ptq = export.convert_int8(model, train.x, num_samples=config.calibration_samples)
    rows.append(("PTQ int8 (TFLite Micro)", _micro_accuracy(ptq, test.x, test.y)))
    qat = export.quantize_qat(model, run._training_batches(train), config.qat_epochs,  # noqa: SLF001
                              loss=run._loss(), learning_rate=config.qat_learning_rate)  # noqa: SLF001
    rows.append(("QAT fake-quant (Keras)", _accuracy(qat.predict(test.x, verbose=0), test.y)))
    remade = export.convert_int8(qat, train.x, num_samples=config.calibration_samples)
    rows.append(("QAT int8 (TFLite Micro)", _micro_accuracy(remade, test.x, test.y)))
    shipped_acc = _micro_accuracy(shipped, test.x, test.y)
    rows.append(("the run's model.tflite", shipped_acc))
    for name, value in rows:
        print(f"{name:28s} {value:.4f}")
    print(f"int8_gap_points={100 * (rows[0][1] - shipped_acc):.2f}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
