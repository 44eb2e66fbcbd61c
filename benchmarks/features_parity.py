"""C-computed keyword-spotting features against Python-computed ones, on the test clips.

Writes `features.c` / `features.h` (`mnas.deploy.features_c`), builds them with the system C
compiler, runs them on every clip of the test split, and prints:

- the maximum absolute difference between C and Python MFCCs (and the largest MFCC value);
- the same against CMSIS-DSP's arithmetic (PyPI `cmsisdsp`: `arm_rfft_fast_f32` and
  `arm_cmplx_mag_squared_f32`, then the same tables in float32), on `--cmsis_clips` clips;
- the int8 model's accuracy in the TFLite Micro interpreter with C-computed and with
  Python-computed features, and their difference in points (target: within 0.2);
- with `arm-none-eabi-gcc` installed, the code size of `features.c` built for a Cortex-M4.

Usage:

    python benchmarks/features_parity.py --model=runs/kws_demo/model.tflite \
        --data_dir=data/embedded/kws

Last line: `features_accuracy_diff_points=<|C - Python| in points>`.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np


def cmsis_features(waves, settings):
    """MFCCs with CMSIS-DSP's FFT and magnitude (float32), the C tables and float32 math."""
    import cmsisdsp

    from mnas.datasets import features
    from mnas.deploy import features_c

    instance = cmsisdsp.arm_rfft_fast_instance_f32()
    cmsisdsp.arm_rfft_fast_init_f32(instance, settings.n_fft)
    window = features.window(settings).astype(np.float32)
    bank = np.zeros((settings.n_mels, settings.n_fft // 2 + 1), np.float32)
    starts, lengths, weights = features_c.sparse_mel(settings)
    offset = 0
    for band, (start, length) in enumerate(zip(starts, lengths)):
        bank[band, start:start + length] = weights[offset:offset + length]
        offset += length
    dct = features.dct_matrix(settings).astype(np.float32)
    floor = np.float32(10.0 ** (settings.floor_db / 10.0))
    out = np.zeros((len(waves),) + settings.shape, np.float32)
    for i, wave in enumerate(waves):
        for f in range(settings.shape[0]):
            frame = np.zeros(settings.n_fft, np.float32)
            start = f * settings.hop_samples
            frame[:settings.frame_samples] = wave[start:start + settings.frame_samples] * window
            packed = cmsisdsp.arm_rfft_fast_f32(instance, frame, 0)
            power = np.concatenate([[packed[0] ** 2],
                                    cmsisdsp.arm_cmplx_mag_squared_f32(packed[2:]),
                                    [packed[1] ** 2]]).astype(np.float32)
            db = np.float32(10.0) * np.log10(np.maximum(bank @ power, floor))
            out[i, f, :, 0] = dct @ db
    return out


def cortex_m4_size(source_dir):
    """`arm-none-eabi-size` of features.c built for a Cortex-M4F, or None without the tool."""
    if shutil.which("arm-none-eabi-gcc") is None:
        return None
    obj = os.path.join(source_dir, "features_m4.o")
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                    "-mfpu=fpv4-sp-d16", "-Os", "-std=c99", "-Wall", "-Werror", "-c",
                    os.path.join(source_dir, "features.c"), "-o", obj], check=True)
    text = subprocess.run(["arm-none-eabi-size", obj], check=True, capture_output=True,
                          text=True).stdout.splitlines()
    return dict(zip(text[0].split()[:4], (int(v) for v in text[1].split()[:4])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="runs/kws_demo/model.tflite")
    parser.add_argument("--data_dir", default="data/embedded/kws")
    parser.add_argument("--cmsis_clips", type=int, default=50)
    args = parser.parse_args()
    from mnas import console

    console.own_lines_only()
    from mnas import datasets
    from mnas.hardware import tflm
    from mnas.datasets import features, kws
    from mnas.deploy import features_c

    settings = features.MfccSettings()
    split = datasets.load_split("kws", args.data_dir, "test")
    waves, labels, _ = kws._Source(kws.require_dir(args.data_dir, "keyword-spotting",
                                                   kws.LAYOUT, kws.REAL_SOURCE),
                                   "test", settings, 0, 0.1, 0.1, None).waves()
    python = features.mfcc(waves, settings)
    assert np.array_equal(labels, split.y) and np.allclose(python, split.x, atol=1e-3), \
        "the clips do not give the cached test split"
    with tempfile.TemporaryDirectory() as tmp:
        features_c.write_features_c(settings, tmp)
        exe = features_c.build_host(tmp)
        c = features_c.run_host(exe, waves, settings)
        size = cortex_m4_size(tmp)
    print(f"{len(waves)} test clips of {args.data_dir}; features {settings.shape}")
    print(f"C (host gcc, float32) vs Python (float64): max abs diff {np.abs(c - python).max():.3g}"
          f" (largest |MFCC| {np.abs(python).max():.1f}); mean abs diff "
          f"{np.abs(c - python).mean():.3g}")
    n = min(args.cmsis_clips, len(waves))
    cmsis = cmsis_features(waves[:n], settings)
    print(f"C vs CMSIS-DSP arithmetic (arm_rfft_fast_f32, arm_cmplx_mag_squared_f32), {n} clips:"
          f" max abs diff {np.abs(c[:n] - cmsis).max():.3g}; Python vs CMSIS-DSP "
          f"{np.abs(python[:n] - cmsis).max():.3g}")
    # The model's inputs are standardised per coefficient when its run wrote the statistics.
    stats_path = os.path.join(os.path.dirname(os.path.abspath(args.model)), "features.json")
    standardize = None
    if os.path.exists(stats_path):
        with open(stats_path) as f:
            standardize = json.load(f).get("standardize")
    inputs = {"python": python, "c": c}
    if standardize:
        shape = python.shape[2:]
        mean = np.reshape(standardize["mean"], shape)
        std = np.reshape(standardize["std"], shape)
        inputs = {k: (v - mean) / std for k, v in inputs.items()}
        print(f"inputs standardised per coefficient with {stats_path}")
    runner = tflm.MicroRunner(args.model)
    accuracy = {}
    for name, x in inputs.items():
        predicted = runner.predict(x).reshape(len(x), -1).argmax(axis=1)
        accuracy[name] = 100.0 * float(np.mean(predicted == labels))
    diff = abs(accuracy["c"] - accuracy["python"])
    print(f"int8 accuracy in TFLite Micro ({args.model}): Python features "
          f"{accuracy['python']:.2f}%, C features {accuracy['c']:.2f}%, difference {diff:.2f} "
          f"points (target <= 0.2)")
    if size is None:
        print("arm-none-eabi-gcc not installed: no Cortex-M4 code size")
    else:
        print(f"features.c for Cortex-M4F (arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb "
              f"-mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os, plain C FFT): text {size['text']} B, "
              f"data {size['data']} B, bss {size['bss']} B")
    print(f"features_max_abs_diff={np.abs(c - python).max():.4g}")
    print(f"features_accuracy_diff_points={diff:.2f}")


if __name__ == "__main__":
    main()
