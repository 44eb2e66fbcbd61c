"""C-computed audio features against Python-computed ones, on the test clips.

For keyword spotting (MFCCs) or anomaly detection (log-mel windows), writes `features.c` /
`features.h` (`mnas.deploy.features_c`), builds them with the system C compiler, runs them on
every clip of the test split (every window of it, for anomaly detection), and prints:

- the maximum absolute difference between C and Python features (and the largest value);
- the same against CMSIS-DSP's arithmetic (PyPI `cmsisdsp`: `arm_rfft_fast_f32` and
  `arm_cmplx_mag_squared_f32`, then the same tables in float32), on `--cmsis_clips` inputs;
- the int8 model's metric in the TFLite Micro interpreter (accuracy; ROC AUC for anomaly
  detection) with C-computed and with Python-computed features, and their difference in
  points (target: within 0.2);
- with `arm-none-eabi-gcc` installed, the code size of `features.c` built for a Cortex-M4.

Usage:

    python benchmarks/features_parity.py --model=runs/kws_demo/model.tflite \
        --data_dir=data/embedded/kws
    python benchmarks/features_parity.py --task=ad --model=runs/ad_demo/model.tflite \
        --data_dir=data/embedded/ad

Last line: `features_accuracy_diff_points=<|C - Python| in points>`.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np


def cmsis_mel_db(frames, settings):
    """Mel dB of frames with CMSIS-DSP's FFT and magnitude (float32) and the C tables."""
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
    floor = np.float32(10.0 ** (settings.floor_db / 10.0))
    out = np.zeros((len(frames), settings.n_mels), np.float32)
    for f, samples in enumerate(frames):
        frame = np.zeros(settings.n_fft, np.float32)
        frame[:settings.frame_samples] = samples * window
        packed = cmsisdsp.arm_rfft_fast_f32(instance, frame, 0)
        power = np.concatenate([[packed[0] ** 2], cmsisdsp.arm_cmplx_mag_squared_f32(packed[2:]),
                                [packed[1] ** 2]]).astype(np.float32)
        out[f] = np.float32(10.0) * np.log10(np.maximum(bank @ power, floor))
    return out


def cmsis_features(inputs, settings):
    """The model inputs of `inputs` (n, samples) computed with `cmsis_mel_db`, in float32."""
    from mnas.datasets import features

    mfcc = isinstance(settings, features.MfccSettings)
    count = settings.shape[0] if mfcc else settings.window_frames
    index = settings.frame_index(count)
    out = []
    for samples in inputs:
        db = cmsis_mel_db(samples[index], settings)
        if mfcc:
            out.append((db @ features.dct_matrix(settings).astype(np.float32).T)[..., None])
        else:
            out.append(features.block_mean(db[None], settings.size)[0, ..., None])
    return np.stack(out)


def kws_inputs(data_dir):
    """(settings, samples per input, Python features, labels, metric of scores)."""
    from mnas import datasets
    from mnas.datasets import features, kws

    settings = features.MfccSettings()
    split = datasets.load_split("kws", data_dir, "test")
    waves, labels, _ = kws._Source(kws.require_dir(data_dir, "keyword-spotting", kws.LAYOUT,
                                                   kws.REAL_SOURCE),
                                   "test", settings, 0, 0.1, 0.1, None).waves()
    python = features.mfcc(waves, settings)
    assert np.array_equal(labels, split.y) and np.allclose(python, split.x, atol=1e-3), \
        "the clips do not give the cached test split"

    def accuracy(scores):
        return 100.0 * float(np.mean(scores.argmax(axis=1) == np.asarray(labels)))

    return settings, waves, python, accuracy, "accuracy"


def ad_inputs(data_dir):
    """As `kws_inputs`, for every window of the anomaly-detection test clips."""
    from mnas import datasets
    from mnas.datasets import audio, cache, features

    settings = features.LogMelSettings()
    split = datasets.load_split("ad", data_dir, "test")
    samples, python = [], []
    hop = settings.window_hop * settings.hop_samples
    for path in split.files:
        wave = audio.read_audio(path, settings.sample_rate, settings.min_seconds,
                                cache.SkipLog())
        windows = features.log_mel_windows(wave, settings)
        python.append(windows)
        samples += [wave[i * hop:i * hop + settings.window_samples] for i in range(len(windows))]
    python = np.concatenate(python)
    assert np.allclose(python, split.x, atol=1e-3), "the clips do not give the cached test split"

    def auc(scores):
        return 100.0 * datasets.anomaly_auc(scores, split)["mean"]

    return settings, np.stack(samples), python, auc, "ROC AUC"


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
    parser.add_argument("--task", default="kws", choices=("kws", "ad"))
    parser.add_argument("--model", default=None, help="Defaults to runs/<task>_demo/model.tflite.")
    parser.add_argument("--data_dir", default=None, help="Defaults to data/embedded/<task>.")
    parser.add_argument("--cmsis_clips", type=int, default=50)
    args = parser.parse_args()
    model = args.model or f"runs/{args.task}_demo/model.tflite"
    data_dir = args.data_dir or f"data/embedded/{args.task}"
    from mnas import console

    console.own_lines_only()
    from mnas.hardware import tflm
    from mnas.deploy import features_c

    settings, inputs, python, metric, metric_name = (kws_inputs if args.task == "kws"
                                                     else ad_inputs)(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        features_c.write_features_c(settings, tmp)
        exe = features_c.build_host(tmp)
        c = features_c.run_host(exe, inputs, settings)
        size = cortex_m4_size(tmp)
    print(f"{len(inputs)} test inputs of {data_dir}; features {settings.shape}")
    print(f"C (host gcc, float32) vs Python (float64): max abs diff {np.abs(c - python).max():.3g}"
          f" (largest |value| {np.abs(python).max():.1f}); mean abs diff "
          f"{np.abs(c - python).mean():.3g}")
    n = min(args.cmsis_clips, len(inputs))
    cmsis = cmsis_features(inputs[:n], settings)
    print(f"C vs CMSIS-DSP arithmetic (arm_rfft_fast_f32, arm_cmplx_mag_squared_f32), {n} inputs:"
          f" max abs diff {np.abs(c[:n] - cmsis).max():.3g}; Python vs CMSIS-DSP "
          f"{np.abs(python[:n] - cmsis).max():.3g}")
    # The model's inputs are standardised per coefficient when its run wrote the statistics.
    stats_path = os.path.join(os.path.dirname(os.path.abspath(model)), "features.json")
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
    runner = tflm.MicroRunner(model)
    figure = {}
    for name, x in inputs.items():
        figure[name] = metric(runner.predict(x).reshape(len(x), -1))
    diff = abs(figure["c"] - figure["python"])
    print(f"int8 {metric_name} in TFLite Micro ({model}): Python features "
          f"{figure['python']:.2f}%, C features {figure['c']:.2f}%, difference {diff:.2f} "
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
