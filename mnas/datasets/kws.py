"""Keyword spotting: Speech Commands v2 in its standard folder layout, 12-class task."""

import dataclasses
import math
from pathlib import Path

import numpy as np

from mnas.datasets import cache, kws_augment, stream
from mnas.datasets.audio import fit_length, read_audio
from mnas.datasets.features import MfccSettings
from mnas.datasets.split import (SPLITS, Split, check_max_per_class, check_split, require_dir,
                                 stored)
from mnas.errors import DatasetError

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
LABELS = WORDS + ("silence", "unknown")
SILENCE = LABELS.index("silence")
UNKNOWN = LABELS.index("unknown")
NOISE_DIR = "_background_noise_"
# The separately released test archive holds these instead of list files and noise.
TEST_ARCHIVE_FOLDERS = {"_silence_": "silence", "_unknown_": "unknown"}
LAYOUT = (
    "Speech Commands v2: DIR/<word>/<speaker>_nohash_<n>.wav (one folder per word), "
    "DIR/_background_noise_/*.wav, DIR/validation_list.txt and DIR/testing_list.txt; or, for "
    "the test split, the separate test archive: DIR/<word>/, DIR/_silence_/, DIR/_unknown_/"
)
TEST_SOURCE = "http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz"
REAL_SOURCE = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
# Silence clips of each split are cut from its own share of every noise file, so validation
# and test silence is never heard in training.
NOISE_SEGMENTS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}
MIN_SECONDS = 0.1
# Clips read and turned into features at a time while the cache is written.
CHUNK = 256


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Waveform augmentation of training clips (the TensorFlow speech-commands defaults).

    Attributes:
        background_frequency: share of clips mixed with background noise.
        background_volume: the noise gain is drawn uniformly from [0, background_volume].
        time_shift_ms: clips are shifted by up to this many ms either way, zero padded.
        clean_share: share of clips left unshifted and without noise each epoch (SpecAugment
            still applies), as when each clip is drawn from itself and two augmented copies.
    """

    background_frequency: float = 0.8
    background_volume: float = 0.1
    time_shift_ms: float = 100.0
    clean_share: float = 1 / 3


def _read_list(root, name):
    path = root / name
    if not path.is_file():
        raise DatasetError(
            f"Invalid keyword-spotting dataset at {str(root)!r}: expected the list file {name} "
            f"of the layout {LAYOUT}; received a folder without it. Get the real dataset from "
            f"{REAL_SOURCE}, or run `make data` for the embedded synthetic one."
        )
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def is_test_archive(root):
    """True for Speech Commands' separate test archive (`_silence_/`, `_unknown_/`, no lists)."""
    root = Path(root)
    return (any((root / name).is_dir() for name in TEST_ARCHIVE_FOLDERS)
            and not (root / "testing_list.txt").exists())


def _split_files(root, split):
    """The (relative path, word) pairs of a split, by the list files or the test archive."""
    if is_test_archive(root):
        if split != "test":
            raise DatasetError(
                f"Invalid value for `split`: {str(root)!r} is Speech Commands' test archive "
                f"({TEST_SOURCE}), which holds the test split only; received {split!r}. Give "
                f"the training archive for the other splits.")
        return [(f"{folder.name}/{path.name}", TEST_ARCHIVE_FOLDERS.get(folder.name, folder.name))
                for folder in sorted(p for p in root.iterdir() if p.is_dir())
                if not folder.name.startswith(".")
                and (folder.name in TEST_ARCHIVE_FOLDERS or not folder.name.startswith("_"))
                for path in sorted(folder.glob("*.wav"))]
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


def _noise_paths(root):
    folder = root / NOISE_DIR
    return sorted(folder.glob("*.wav")) if folder.is_dir() else []


def _noise_crop(noise, split, length, rng):
    """A random `length`-sample crop of a random noise file, from the split's share of it."""
    wave = _share(noise[rng.integers(len(noise))], split)
    if wave.size <= length:
        return np.resize(wave, length) if wave.size else np.zeros(length, np.float32)
    start = rng.integers(wave.size - length + 1)
    return wave[start : start + length]


def _share(wave, split):
    low, high = NOISE_SEGMENTS[split]
    return wave[int(low * wave.size) : int(high * wave.size)]


def _capped(pairs, limit):
    return pairs if limit is None else pairs[:limit]


class _Source:
    """The files of one split and how to turn them into mel spectra, a chunk at a time."""

    def __init__(self, root, split, settings, seed, silence_share, unknown_share,
                 max_per_class):
        self.root, self.split, self.settings, self.seed = root, split, settings, seed
        files = _split_files(root, split)
        known = [pair for index, word in enumerate(LABELS[:SILENCE])
                 for pair in _capped([(f, index) for f, w in files if w == word], max_per_class)]
        if is_test_archive(root):
            # The archive brings its own silence and unknown clips.
            self.examples = known + [
                pair for label in (SILENCE, UNKNOWN) for pair in _capped(
                    [(f, label) for f, w in files if w == LABELS[label]], max_per_class)]
            self.n_silence, self.noise_paths = 0, []
            return
        unknown = [(f, UNKNOWN) for f, w in files if w not in WORDS]
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        n_unknown = min(len(unknown), math.ceil(unknown_share * len(known)))
        if max_per_class is not None:
            n_unknown = min(n_unknown, max_per_class)
        picked = sorted(rng.choice(len(unknown), n_unknown, replace=False)) if unknown else []
        self.examples = known + [unknown[i] for i in picked]
        self.n_silence = math.ceil(silence_share * len(known))
        if max_per_class is not None:
            self.n_silence = min(self.n_silence, max_per_class)
        self.noise_paths = _noise_paths(root)

    def sources(self):
        return [self.root / f for f, _ in self.examples] + self.noise_paths

    def noise(self, skips):
        waves = [read_audio(p, self.settings.sample_rate, MIN_SECONDS, skips)
                 for p in self.noise_paths]
        return [w for w in waves if w is not None]

    def wave_chunks(self, skips):
        """(clips done, waves (n, samples), labels, index in `examples` or -1), the readable
        clips a chunk at a time, then the silence clips."""
        length, rate = self.settings.clip_samples, self.settings.sample_rate
        for start in range(0, len(self.examples), CHUNK):
            waves, labels, index = [], [], []
            for i, (relative, label) in enumerate(self.examples[start:start + CHUNK], start):
                wave = read_audio(self.root / relative, rate, MIN_SECONDS, skips)
                if wave is not None:
                    waves.append(fit_length(wave, length))
                    labels.append(label)
                    index.append(i)
            yield (min(CHUNK, len(self.examples) - start),
                   np.asarray(waves, np.float32).reshape(-1, length), labels, index)
        noise = self.noise(skips) if self.n_silence else []
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), 1])
        waves = [(_noise_crop(noise, self.split, length, rng) * rng.uniform()) if noise
                 else np.zeros(length, np.float32) for _ in range(self.n_silence)]
        yield (self.n_silence, np.asarray(waves, np.float32).reshape(-1, length),
               [SILENCE] * len(waves), [-1] * len(waves))

    def waves(self):
        """(waves (N, samples), labels, index in `examples` or -1) of the whole split, as the
        cache holds their features (benchmarks compare features computed elsewhere)."""
        parts = list(self.wave_chunks(cache.SkipLog()))
        return (np.concatenate([p[1] for p in parts]), [v for p in parts for v in p[2]],
                [v for p in parts for v in p[3]])

    def chunks(self, skips):
        """(clips done, {"x": mel dB, "y": labels, "file": index in `examples` or -1})."""
        for done, waves, labels, index in self.wave_chunks(skips):
            yield done, {"x": kws_augment.mel_db(waves, self.settings),
                         "y": np.asarray(labels, np.int32), "file": np.asarray(index, np.int32)}

    def noise_chunks(self, skips):
        """The training share of every noise file, as mel dB frames (for augmentation)."""
        shares = [_share(w, "train") for w in self.noise(skips)]
        frames, bounds = kws_augment.noise_frames(shares, self.settings)
        file = np.zeros(len(frames), np.int32)
        for i, (low, high) in enumerate(bounds):
            file[low:high] = i
        yield len(self.noise_paths), {"x": frames, "y": file}


def load(data_dir, split, cache_dir=None, seed=0, silence_share=0.1, unknown_share=0.1,
         augmentation=Augmentation(), max_per_class=None, test_dir=None, **feature_options):
    """Reads one split of a Speech Commands v2 folder as 49x10x1 MFCCs and 12 labels.

    Features are computed once into a sharded cache (mel spectra, from which MFCCs follow);
    `x` reads them by memory map.

    Args:
        data_dir: the dataset folder (layout in `LAYOUT`).
        split: "train", "validation" or "test" (by validation_list.txt / testing_list.txt).
        cache_dir: where computed features are kept. Defaults to `cache.default_cache_dir()`.
        seed: seed of the choice of unknown-word clips and of the silence clips.
        silence_share: silence clips added, as a share of the keyword clips. Defaults to 0.1.
        unknown_share: other-word clips kept, as a share of the keyword clips. Defaults to 0.1.
        augmentation: an `Augmentation`, used by the train split's training pipeline.
        max_per_class: keep at most this many clips of each of the 12 classes (the first by
            name), for a quick run on a subset. Defaults to all.
        test_dir: Speech Commands' separately released test archive, read for the test split
            instead of the clips that testing_list.txt names. Defaults to None.
        **feature_options: fields of `MfccSettings` (e.g. `n_mfcc=10`).

    Returns:
        A `Split`; `x` holds the MFCCs of `features.mfcc` (not standardised), shape
        (N, 49, 10, 1) by default.
    """
    check_split(split)
    check_max_per_class(max_per_class)
    root = require_dir(data_dir, "keyword-spotting", LAYOUT, REAL_SOURCE)
    if split == "test" and test_dir is not None:
        root = require_dir(test_dir, "keyword-spotting test", LAYOUT, TEST_SOURCE)
    settings = MfccSettings(**feature_options)
    source = _Source(root, split, settings, seed, silence_share, unknown_share, max_per_class)
    cache_dir = cache.default_cache_dir() if cache_dir is None else cache_dir
    described = {"split": split, "seed": seed, "silence_share": silence_share,
                 "unknown_share": unknown_share, "max_per_class": max_per_class,
                 "mfcc": dataclasses.asdict(settings)}
    key = cache.cache_key("kws", described, source.sources())
    entry = cache.sharded(cache_dir, f"kws-{split}", key, source.chunks,
                          len(source.examples) + source.n_silence)
    entry.warn_skipped("corrupt, empty or too short audio files", root)
    extras = {"settings": settings, "augmentation": augmentation}
    if split == "train" and source.noise_paths:
        noise_key = cache.cache_key("kws-noise", {"mfcc": dataclasses.asdict(settings)},
                                    source.noise_paths)
        noise = cache.sharded(cache_dir, "kws-noise", noise_key, source.noise_chunks,
                              len(source.noise_paths))
        frames, file = np.asarray(noise.array("x")), np.asarray(noise.array("y"))
        extras["noise"] = frames
        extras["noise_bounds"] = np.asarray(
            [(np.argmax(file == i), len(file) - np.argmax(file[::-1] == i))
             for i in np.unique(file)], np.int64).reshape(-1, 2)
    names = [f for f, _ in source.examples]
    index = np.asarray(entry.array("file"))
    return Split(
        task="kws", name=split,
        x=entry.array("x", lambda db: kws_augment.mfcc_from_db(db, settings)),
        y=np.asarray(entry.array("y")), labels=LABELS,
        files=tuple(names[i] if i >= 0 else (NOISE_DIR if source.noise_paths else "")
                    for i in index.tolist()),
        entry=entry, extras=extras,
    )


def training_dataset(split, batch_size, seed, augment=True, in_memory=False, **masks):
    """Training batches of keyword-spotting features, augmented afresh every epoch.

    Every epoch, each clip is shifted in time and mixed with background noise (see
    `Augmentation`), then SpecAugment masks replace random runs of frames and of
    coefficients with the training mean (`kws_augment.example_fn`).

    Args:
        split: a KWS `Split` from `load(..., "train")`.
        batch_size: examples per batch.
        seed: seed of shuffling and augmentation.
        augment: False for plain shuffled batches.
        in_memory: read the cached features into RAM first instead of streaming them.
            Defaults to False.
        **masks: SpecAugment settings of `kws_augment.example_fn` (`time_masks=2`,
            `time_mask_frames=5`, `frequency_masks=1`, `frequency_mask_bins=2`).

    Returns:
        A `tf.data.Dataset` of (x, y) batches (epochs as `stream.batches` gives them).
    """
    settings = split.extras["settings"]
    if not augment:
        return stream.split_batches(
            split, batch_size, seed, in_memory,
            decode=lambda db: kws_augment.tf_mfcc_from_db(db, settings))
    if split.name != "train":
        raise ValueError(
            f"Invalid value for `split`: expected the train split of a keyword-spotting dataset "
            f"for augmentation, received the {split.name!r} split.")
    augmentation = split.extras["augmentation"]
    noise = split.extras.get("noise", np.zeros((0, settings.n_mels), np.float32))
    if not len(noise) and augmentation.background_frequency > 0:
        raise DatasetError(
            f"Invalid keyword-spotting dataset: background-noise augmentation needs wav files "
            f"in {NOISE_DIR}/; received none. Set `background_frequency=0` or add the noise "
            f"files ({LAYOUT}).")
    sample = split.x[:: max(1, len(split) // 4096)]
    fill = sample.mean(axis=(0, 1), keepdims=True)[0]
    example_fn = kws_augment.example_fn(
        augmentation, settings, noise, split.extras.get("noise_bounds", np.zeros((0, 2))),
        fill, split.standardization, **masks)
    if in_memory:
        return stream.batches((np.asarray(stored(split)), split.y), batch_size, seed,
                              example_fn=example_fn)
    return stream.batches(split.entry, batch_size, seed, example_fn=example_fn, rows=split.rows)
