"""Keyword spotting: Speech Commands v2 in its standard folder layout, 12-class task."""

import dataclasses
import math
from pathlib import Path

import numpy as np

from mnas.datasets import cache, pipeline
from mnas.datasets.audio import SkipLog, fit_length, read_audio
from mnas.datasets.features import MfccSettings, mfcc
from mnas.datasets.split import SPLITS, Split, as_arrays, check_split, require_dir
from mnas.errors import DatasetError

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
LABELS = WORDS + ("silence", "unknown")
SILENCE = LABELS.index("silence")
UNKNOWN = LABELS.index("unknown")
NOISE_DIR = "_background_noise_"
LAYOUT = (
    "Speech Commands v2: DIR/<word>/<speaker>_nohash_<n>.wav (one folder per word), "
    "DIR/_background_noise_/*.wav, DIR/validation_list.txt and DIR/testing_list.txt"
)
REAL_SOURCE = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
# Silence clips of each split are cut from its own share of every noise file, so validation
# and test silence is never heard in training.
NOISE_SEGMENTS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}
MIN_SECONDS = 0.1


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Waveform augmentation of training clips (the TensorFlow speech-commands defaults).

    Attributes:
        background_frequency: share of clips mixed with background noise.
        background_volume: the noise gain is drawn uniformly from [0, background_volume].
        time_shift_ms: clips are shifted by up to this many ms either way, zero padded.
    """

    background_frequency: float = 0.8
    background_volume: float = 0.1
    time_shift_ms: float = 100.0


def _read_list(root, name):
    path = root / name
    if not path.is_file():
        raise DatasetError(
            f"Invalid keyword-spotting dataset at {str(root)!r}: expected the list file {name} "
            f"of the layout {LAYOUT}; received a folder without it. Get the real dataset from "
            f"{REAL_SOURCE}, or run `make data` for the embedded synthetic one."
        )
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def _split_files(root, split):
    """The (relative path, word) pairs of a split, by the Speech Commands list files."""
    listed = {"validation": _read_list(root, "validation_list.txt")}
    listed["test"] = _read_list(root, "testing_list.txt")
    files = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.startswith(("_", ".")):
            continue
        for path in sorted(folder.glob("*.wav")):
            relative = f"{folder.name}/{path.name}"
            which = next((s for s, names in listed.items() if relative in names), "train")
            if which == split:
                files.append((relative, folder.name))
    return files


def _noise(root, sample_rate, skips):
    folder = root / NOISE_DIR
    paths = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    waves = [read_audio(p, sample_rate, MIN_SECONDS, skips) for p in paths]
    return [(str(p), w) for p, w in zip(paths, waves) if w is not None]


def _noise_crop(noise, split, length, rng):
    """A random `length`-sample crop of a random noise file, from the split's share of it."""
    _, wave = noise[rng.integers(len(noise))]
    low, high = NOISE_SEGMENTS[split]
    segment = wave[int(low * wave.size) : int(high * wave.size)]
    if segment.size <= length:
        return np.resize(segment, length) if segment.size else np.zeros(length, np.float32)
    start = rng.integers(segment.size - length + 1)
    return segment[start : start + length]


class _Source:
    """The files of one split and how to turn them into waveforms."""

    def __init__(self, root, split, settings, seed, silence_share, unknown_share):
        self.root, self.split, self.settings, self.seed = root, split, settings, seed
        self.skips = SkipLog("audio files")
        files = _split_files(root, split)
        known = [(f, LABELS.index(w)) for f, w in files if w in WORDS]
        unknown = [(f, UNKNOWN) for f, w in files if w not in WORDS]
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        n_unknown = min(len(unknown), math.ceil(unknown_share * len(known)))
        picked = sorted(rng.choice(len(unknown), n_unknown, replace=False)) if unknown else []
        self.examples = known + [unknown[i] for i in picked]
        self.n_silence = math.ceil(silence_share * len(known))
        self.noise = _noise(root, settings.sample_rate, self.skips)

    def sources(self):
        return [self.root / f for f, _ in self.examples] + [Path(p) for p, _ in self.noise]

    def waves(self):
        """(waves (N, samples), labels, files): readable clips, then the silence clips."""
        length = self.settings.clip_samples
        waves, labels, files = [], [], []
        for relative, label in self.examples:
            wave = read_audio(self.root / relative, self.settings.sample_rate, MIN_SECONDS,
                              self.skips)
            if wave is not None:
                waves.append(fit_length(wave, length))
                labels.append(label)
                files.append(relative)
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), 1])
        for _ in range(self.n_silence):
            if self.noise:
                waves.append(_noise_crop(self.noise, self.split, length, rng) * rng.uniform())
                files.append(NOISE_DIR)
            else:
                waves.append(np.zeros(length, np.float32))
                files.append("")
            labels.append(SILENCE)
        self.skips.warn(self.root)
        return np.stack(waves) if waves else np.zeros((0, length), np.float32), labels, files

    def augmented(self, waves, augmentation, copies, seed):
        """`copies` augmented versions of `waves`, as float32 (copies, N, samples)."""
        if not self.noise and augmentation.background_frequency > 0:
            raise DatasetError(
                f"Invalid keyword-spotting dataset at {str(self.root)!r}: background-noise "
                f"augmentation needs wav files in {NOISE_DIR}/; received none. Set "
                f"`background_frequency=0` or add the noise files ({LAYOUT})."
            )
        shift = int(augmentation.time_shift_ms * self.settings.sample_rate / 1000)
        out = np.zeros((copies,) + waves.shape, np.float32)
        for copy in range(copies):
            rng = np.random.default_rng([seed, copy])
            for i, wave in enumerate(waves):
                offset = int(rng.integers(-shift, shift + 1))
                shifted = np.zeros_like(wave)
                if offset >= 0:
                    shifted[offset:] = wave[: wave.size - offset]
                else:
                    shifted[:offset] = wave[-offset:]
                if rng.uniform() < augmentation.background_frequency:
                    noise = _noise_crop(self.noise, "train", wave.size, rng)
                    shifted = shifted + noise * rng.uniform(0, augmentation.background_volume)
                out[copy, i] = np.clip(shifted, -1.0, 1.0)
        return out


def load(data_dir, split, cache_dir=None, seed=0, silence_share=0.1, unknown_share=0.1,
         augmentation=Augmentation(), **feature_options):
    """Reads one split of a Speech Commands v2 folder as 49x10x1 MFCCs and 12 labels.

    Args:
        data_dir: the dataset folder (layout in `LAYOUT`).
        split: "train", "validation" or "test" (by validation_list.txt / testing_list.txt).
        cache_dir: where computed features are kept. Defaults to `cache.default_cache_dir`.
        seed: seed of the choice of unknown-word clips and of the silence clips.
        silence_share: silence clips added, as a share of the keyword clips. Defaults to 0.1.
        unknown_share: other-word clips kept, as a share of the keyword clips. Defaults to 0.1.
        augmentation: an `Augmentation`, used by the train split's augmented copies.
        **feature_options: fields of `MfccSettings` (e.g. `n_mfcc=10`).

    Returns:
        A `Split`; `x` holds librosa MFCCs (not standardised), shape (N, 49, 10, 1) by default.
    """
    check_split(split)
    root = require_dir(data_dir, "keyword-spotting", LAYOUT, REAL_SOURCE)
    settings = MfccSettings(**feature_options)
    source = _Source(root, split, settings, seed, silence_share, unknown_share)
    cache_dir = cache.default_cache_dir(root) if cache_dir is None else cache_dir
    described = {"split": split, "seed": seed, "silence_share": silence_share,
                 "unknown_share": unknown_share, "mfcc": dataclasses.asdict(settings)}
    key = cache.cache_key("kws", described, source.sources())

    def compute():
        waves, labels, files = source.waves()
        x, y = as_arrays(mfcc(waves, settings), labels, settings.shape)
        return {"x": x, "y": y, "files": np.asarray(files, dtype=str)}

    arrays = cache.cached(cache_dir, f"kws-{split}", key, compute)

    def augmenter(copies, augment_seed):
        aug_key = cache.cache_key(
            "kws-augmented",
            {"features": key, "copies": copies, "seed": augment_seed,
             "augmentation": dataclasses.asdict(augmentation)},
            [],
        )

        def compute_copies():
            waves, _, _ = source.waves()
            copies_ = source.augmented(waves, augmentation, copies, augment_seed)
            return {"x": mfcc(copies_.reshape(-1, waves.shape[1]), settings).reshape(
                (copies, len(waves)) + settings.shape)}

        return cache.cached(cache_dir, "kws-augmented", aug_key, compute_copies)["x"]

    return Split(
        task="kws", name=split, x=arrays["x"], y=arrays["y"], labels=LABELS,
        files=tuple(arrays["files"].tolist()),
        augmenter=augmenter if split == "train" else None,
    )


def training_dataset(split, batch_size, seed, augment=True, copies=2, time_masks=2,
                     time_mask_frames=5, frequency_masks=1, frequency_mask_bins=2):
    """Training batches of keyword-spotting features, augmented.

    Each example is drawn from its clean features or one of `copies` waveform-augmented
    copies (background noise, time shift; computed once and cached), then SpecAugment masks
    replace random runs of frames and of coefficients with the training mean.

    Args:
        split: a KWS `Split` from `load(..., "train")`.
        batch_size: examples per batch.
        seed: seed of shuffling and augmentation.
        augment: False for plain shuffled batches.
        copies: waveform-augmented copies. Defaults to 2.
        time_masks: time masks per example. Defaults to 2.
        time_mask_frames: the widest time mask, in frames. Defaults to 5.
        frequency_masks: coefficient masks per example. Defaults to 1.
        frequency_mask_bins: the widest coefficient mask. Defaults to 2.

    Returns:
        A `tf.data.Dataset` of (x, y) batches.
    """
    import tensorflow as tf

    if not augment:
        return pipeline.batches(split.x, split.y, batch_size, seed)
    if split.augmenter is None:
        raise ValueError(
            f"Invalid value for `split`: expected the train split of a keyword-spotting dataset "
            f"for augmentation, received the {split.name!r} split."
        )
    stacked = np.concatenate([split.x[None], split.augmenter(copies, seed)]).swapaxes(0, 1)
    fill = tf.constant(split.x.mean(axis=(0, 1), keepdims=True)[0], tf.float32)
    frames, bins = split.x.shape[1], split.x.shape[2]

    def mask(x, seeds, count, widest, axis, size):
        for i in range(count):
            width = tf.random.stateless_uniform([], seeds[2 * i], 0, widest + 1, tf.int32)
            start = tf.random.stateless_uniform([], seeds[2 * i + 1], 0, size - width + 1,
                                                tf.int32)
            positions = tf.range(size)
            hit = (positions >= start) & (positions < start + width)
            shape = [1, 1, 1]
            shape[axis] = size
            x = tf.where(tf.reshape(hit, shape), fill, x)
        return x

    def example_fn(x_all, y, seed_pair):
        seeds = tf.random.experimental.stateless_split(
            seed_pair, 1 + 2 * (time_masks + frequency_masks))
        choice = tf.random.stateless_uniform([], seeds[0], 0, copies + 1, tf.int32)
        x = tf.gather(x_all, choice)
        x = mask(x, seeds[1:], time_masks, time_mask_frames, 0, frames)
        x = mask(x, seeds[1 + 2 * time_masks:], frequency_masks, frequency_mask_bins, 1, bins)
        return x, y

    return pipeline.batches(stacked, split.y, batch_size, seed, example_fn=example_fn)
