"""Feature caching and streamed training on a Speech-Commands-sized dataset, with peak memory.

Generates a synthetic dataset in the Speech Commands v2 layout (by default 100,000 one-second
16 kHz clips: a tone per word with harmonics, random pitch, onset, length and loudness, in
noise; background-noise files; list files) in a child process, caches its features
(`mnas.datasets.kws.load`, sharded on disk), trains a small DS-CNN for two epochs streamed from
the cache with fresh augmentation every epoch, and measures the steady-state examples per
second. Then, on a subset that fits in RAM (`--in_ram_per_class`), compares epochs streamed
from the cache with epochs of the same pipeline over arrays held in RAM, alternating
(`--rounds` of each, medians compared, so that a change of the machine's load hits both). The
dataset and the cache are deleted at the end unless `--keep`.

Prints the figures, and last `peak_rss_mb=<x>`: the peak resident memory of the process over
the caching and the two training epochs (the generator's child process is not counted), which
includes the cache pages it has mapped. The comparison on the subset comes after, and holds its
arrays in RAM by design: its peak is printed on a line of its own.

    python benchmarks/data_scale.py [--clips 100000] [--root /tmp/mnas-data-scale]
"""

import argparse
import concurrent.futures
import multiprocessing
import resource
import shutil
import time
from pathlib import Path

import numpy as np

import mnas
import tf_keras as keras
from mnas import datasets
from mnas.datasets import kws
from mnas.datasets.embedded import colored_noise

RATE = 16000
WORDS = kws.WORDS + ("bed", "bird", "cat", "dog", "house", "tree")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_pcm16(path, pcm):
    """A mono 16 kHz 16-bit wav file, header and samples written in one go."""
    data = pcm.astype("<i2").tobytes()
    header = b"".join([b"RIFF", (36 + len(data)).to_bytes(4, "little"), b"WAVEfmt ",
                       (16).to_bytes(4, "little"), (1).to_bytes(2, "little"),
                       (1).to_bytes(2, "little"), RATE.to_bytes(4, "little"),
                       (2 * RATE).to_bytes(4, "little"), (2).to_bytes(2, "little"),
                       (16).to_bytes(2, "little"), b"data", len(data).to_bytes(4, "little")])
    with open(path, "wb") as f:
        f.write(header + data)


def generate(root, clips, seed, block=500):
    """Writes `clips` clips in the Speech Commands v2 layout under `root`."""
    import soundfile

    rng = np.random.default_rng(seed)
    t = (np.arange(RATE) / RATE).astype(np.float32)
    validation, testing = [], []
    per_word = np.bincount(np.arange(clips) % len(WORDS), minlength=len(WORDS))
    written = 0
    for index, word in enumerate(WORDS):
        folder = root / word
        folder.mkdir(parents=True, exist_ok=True)
        base = 150.0 * 1.18 ** index
        for start in range(0, per_word[index], block):
            n = min(block, per_word[index] - start)
            pitch = (base * rng.uniform(0.9, 1.1, (n, 1))).astype(np.float32)
            phase = (2 * np.pi * pitch) * t
            tone = np.sin(phase) + np.sin(2 * phase) / 2 + np.sin(3 * phase) / 3
            onset = rng.integers(0, RATE // 3, (n, 1))
            length = rng.integers(RATE // 3, RATE // 2, (n, 1))
            envelope = ((t * RATE >= onset) & (t * RATE < onset + length)).astype(np.float32)
            waves = (0.3 * rng.uniform(0.2, 1.0, (n, 1)) * tone * envelope
                     + rng.uniform(0.001, 0.02, (n, 1)).astype(np.float32)
                     * rng.standard_normal((n, RATE), np.float32))
            pcm = np.round(np.clip(waves, -1, 1) * 32767).astype(np.int16)
            speakers = rng.integers(16**8, size=n)
            for i in range(n):
                name = f"{speakers[i]:08x}_nohash_{start + i}.wav"
                write_pcm16(folder / name, pcm[i])
                which = (written * 7919) % 10
                if which == 0:
                    validation.append(f"{word}/{name}")
                elif which == 1:
                    testing.append(f"{word}/{name}")
                written += 1
    noise_dir = root / kws.NOISE_DIR
    noise_dir.mkdir(parents=True, exist_ok=True)
    for exponent in (0.0, 1.0, 2.0):
        wave = colored_noise(60 * RATE, exponent, rng)
        pcm = np.round(0.3 * wave / np.abs(wave).max() * 32767).astype(np.int16)
        soundfile.write(str(noise_dir / f"noise_{exponent:.0f}.wav"), pcm, RATE)
    (root / "validation_list.txt").write_text("".join(p + "\n" for p in validation))
    (root / "testing_list.txt").write_text("".join(p + "\n" for p in testing))
    return written


class Throughput(keras.callbacks.Callback):
    """Examples per second over each epoch's batches after the first `skip` (steady state)."""

    def __init__(self, batch_size, skip=20):
        super().__init__()
        self.batch_size, self.skip, self.rates = batch_size, skip, []

    def on_epoch_begin(self, epoch, logs=None):
        self.step, self.started = 0, None

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step == self.skip:
            self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        steps = self.step - self.skip
        if self.started is not None and steps > 0:
            self.rates.append(steps * self.batch_size / (time.perf_counter() - self.started))


def train(split, epochs, batch_size, seed, in_memory=False):
    """Trains a small DS-CNN on `split`; returns the steady-state examples/s of each epoch."""
    keras.backend.clear_session()  # The previous rounds' models and graphs are not kept.
    keras.utils.set_random_seed(seed)
    model = mnas.build(mnas.get_architecture("ds_cnn_s"))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  ["accuracy"])
    with datasets.over_epochs(0, epochs):
        batches = datasets.training_dataset("kws", split, batch_size, seed, in_memory=in_memory)
    steps = datasets.steps_per_epoch(split, batch_size)
    meter = Throughput(batch_size, skip=min(20, max(1, steps // 5)))
    model.fit(batches, epochs=epochs, steps_per_epoch=steps, callbacks=[meter], verbose=0)
    return meter.rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--root", default="/tmp/mnas-data-scale")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--in_ram_per_class", type=int, default=1500,
                        help="Clips per class of the subset compared in RAM and streamed.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Alternating epochs of each kind on the subset.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="Keep the dataset and the cache.")
    args = parser.parse_args()

    root = Path(args.root)
    data, cache_dir = root / "speech_commands", root / "cache"
    try:
        started = time.time()
        if not (data / "testing_list.txt").exists():
            with concurrent.futures.ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn")) as child:
                written = child.submit(generate, data, args.clips, args.seed).result()
            print(f"generated {written:,} clips in {time.time() - started:.0f} s "
                  f"({sum(p.stat().st_size for p in data.rglob('*.wav')) / 2**30:.2f} GiB)",
                  flush=True)
        started = time.time()
        splits = {name: kws.load(data, name, cache_dir=cache_dir) for name in datasets.SPLITS}
        caching_s = time.time() - started
        cache_mb = sum(p.stat().st_size for p in cache_dir.rglob("*.npy")) / 2**20
        print(f"feature caching: {caching_s:.0f} s for "
              + ", ".join(f"{n} {len(s):,}" for n, s in splits.items())
              + f" examples; cache {cache_mb:.0f} MB on disk; peak RSS {peak_rss_mb():.0f} MB",
              flush=True)
        started = time.time()
        rates = train(splits["train"], args.epochs, args.batch_size, args.seed)
        print(f"training from the cache: {args.epochs} epochs of {len(splits['train']):,} "
              f"examples in {time.time() - started:.0f} s; steady state "
              + ", ".join(f"{r:.0f}" for r in rates) + " examples/s per epoch; peak RSS "
              f"{peak_rss_mb():.0f} MB", flush=True)
        streaming_peak = peak_rss_mb()
        subset = kws.load(data, "train", cache_dir=cache_dir,
                          max_per_class=args.in_ram_per_class)
        streamed, in_ram = [], []
        for _ in range(args.rounds):
            streamed += train(subset, 1, args.batch_size, args.seed)
            in_ram += train(subset, 1, args.batch_size, args.seed, in_memory=True)
        print(f"subset of {len(subset):,} examples, examples/s per epoch: streamed from the "
              f"cache {', '.join(f'{r:.0f}' for r in streamed)}; in RAM "
              f"{', '.join(f'{r:.0f}' for r in in_ram)}")
        print(f"peak RSS after the subset comparison (arrays in RAM): {peak_rss_mb():.0f} MB")
        print(f"examples_per_s_cache={np.mean(rates):.0f}")
        print(f"cache_vs_ram_throughput={np.median(streamed) / np.median(in_ram):.3f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"peak_rss_mb={streaming_peak:.0f}")


if __name__ == "__main__":
    main()
