"""Anomaly detection: DCASE2020 task 2 (MIMII / ToyADMOS) machine sounds, machine-ID labels."""

import csv
import dataclasses
import re
import warnings

import numpy as np

from mnas.datasets import cache, stream
from mnas.datasets.audio import read_audio
from mnas.datasets.features import LogMelSettings, log_mel_windows
from mnas.datasets.split import Split, carve, check_max_per_class, check_split, require_dir
from mnas.errors import DatasetError

LAYOUT = (
    "DCASE2020 task 2: DIR/<machine>/train/normal_id_XX_*.wav and "
    "DIR/<machine>/test/{normal,anomaly}_id_XX_*.wav (or DIR itself holding train/ and test/); "
    "the evaluation set's DIR/<machine>/test/id_XX_*.wav with its ground-truth CSV "
    "(rows `<file name>,<0 normal|1 anomaly>`) in DIR/<machine>/ or DIR/"
)
REAL_SOURCE = "https://zenodo.org/record/3678171 (DCASE2020 task 2 development dataset)"
FILE_PATTERN = re.compile(r"^(normal|anomaly)_(id_\d+)_.*\.wav$")
# The evaluation set's test files carry no label in their names.
EVAL_PATTERN = re.compile(r"^(id_\d+)_.*\.wav$")
# Clips read and turned into windows at a time while the cache is written.
CHUNK = 256


def _machine_dir(root, machine):
    if machine is not None:
        candidate = root / machine
        if not (candidate / "train").is_dir():
            raise DatasetError(
                f"Invalid value for `machine`: expected a folder {str(candidate)!r} holding "
                f"train/ and test/ ({LAYOUT}); received {machine!r}."
            )
        return candidate
    if (root / "train").is_dir():
        return root
    machines = sorted(p.name for p in root.iterdir() if (p / "train").is_dir())
    if len(machines) == 1:
        return root / machines[0]
    raise DatasetError(
        f"Invalid anomaly-detection dataset at {str(root)!r}: expected the layout {LAYOUT} "
        f"with one machine type, or `machine=` naming one; received "
        f"{'machine folders ' + ', '.join(machines) if machines else 'no train/ folder'}. "
        f"Get the real dataset from {REAL_SOURCE}, or run `make data` for the embedded one."
    )


def _eval_labels(folders):
    """{file name: anomaly} from ground-truth CSV files (`<name>,<0|1>` rows) in `folders`."""
    labels = {}
    for folder in folders:
        for path in sorted(folder.glob("*.csv")):
            with open(path, newline="") as f:
                for row in csv.reader(f):
                    if len(row) >= 2 and EVAL_PATTERN.match(row[0].strip()) and (
                            row[1].strip() in ("0", "1")):
                        labels[row[0].strip()] = row[1].strip() == "1"
    return labels


def _clips(folder, label_folders=()):
    """(path, machine id, anomaly) of the wav files of a folder that follow the naming.

    Evaluation files (`id_XX_*.wav`) take their label from the ground-truth CSV files of
    `label_folders`; those without one are left out with a warning.
    """
    clips, unlabelled = [], []
    labels = None
    for path in sorted(folder.glob("*.wav")) if folder.is_dir() else []:
        match = FILE_PATTERN.match(path.name)
        if match:
            clips.append((path, match.group(2), match.group(1) == "anomaly"))
            continue
        match = EVAL_PATTERN.match(path.name)
        if match:
            labels = _eval_labels(label_folders) if labels is None else labels
            if path.name in labels:
                clips.append((path, match.group(1), labels[path.name]))
            else:
                unlabelled.append(path)
    if unlabelled:
        warnings.warn(
            f"Left out {len(unlabelled)} evaluation files without an anomaly label under "
            f"{folder} (first: {unlabelled[0].name}): expected a ground-truth CSV with rows "
            f"`<file name>,<0|1>` in {' or '.join(str(f) for f in label_folders)}.",
            stacklevel=3)
    return clips


def load(data_dir, split, cache_dir=None, machine=None, validation_share=0.1, max_per_class=None,
         **feature_options):
    """Reads one split of a DCASE2020 task 2 machine type as 32x32x1 log-mel windows.

    Labels are machine IDs (self-supervised ID classification, as MicroNets trains it). The
    validation split is a share of the training clips chosen by a hash of their names, so it is
    the same on every run and never overlaps train.

    Args:
        data_dir: the dataset folder (layout in `LAYOUT`).
        split: "train", "validation" (normal clips carved from train/) or "test".
        cache_dir: where computed features are kept. Defaults to `cache.default_cache_dir()`.
        machine: the machine-type folder, when `data_dir` holds several.
        validation_share: share of train/ clips used for validation. Defaults to 0.1.
        max_per_class: keep at most this many clips of each machine ID (and, in the test
            split, of each ID and condition), for a quick run on a subset. Defaults to all.
        **feature_options: fields of `LogMelSettings` (e.g. `window_hop=32`).

    Returns:
        A `Split` of windows with `clip` (index into `files`) and `anomaly` per window; `x` is
        log-mel power in dB (not standardised).
    """
    check_split(split)
    check_max_per_class(max_per_class)
    root = require_dir(data_dir, "anomaly-detection", LAYOUT, REAL_SOURCE)
    folder = _machine_dir(root, machine)
    settings = LogMelSettings(**feature_options)
    settings.validate()
    train_clips = _clips(folder / "train")
    labels = tuple(sorted({machine_id for _, machine_id, _ in train_clips}))
    if not labels:
        raise DatasetError(
            f"Invalid anomaly-detection dataset at {str(folder)!r}: expected wav files named "
            f"normal_id_XX_*.wav in train/ ({LAYOUT}); received none."
        )
    if split == "test":
        clips = [c for c in _clips(folder / "test", (folder, root)) if c[1] in labels]
    else:
        clips = [c for c in train_clips if carve(c[0].name, validation_share) == split]
    if max_per_class is not None:
        groups = sorted({(c[1], c[2]) for c in clips})
        clips = sorted((c for g in groups for c in [c for c in clips if (c[1], c[2]) == g]
                        [:max_per_class]), key=lambda c: c[0].name)
    described = {"split": split, "validation_share": validation_share, "labels": labels,
                 "log_mel": dataclasses.asdict(settings)}
    key = cache.cache_key("ad", described, [c[0] for c in clips])

    def chunks(skips):
        for start in range(0, max(1, len(clips)), CHUNK):
            features, ids, clip_index, anomaly = [], [], [], []
            for index, (path, machine_id, is_anomaly) in enumerate(
                    clips[start:start + CHUNK], start):
                wave = read_audio(path, settings.sample_rate, settings.min_seconds, skips)
                windows = [] if wave is None else log_mel_windows(wave, settings)
                features.extend(windows)
                ids += [labels.index(machine_id)] * len(windows)
                clip_index += [index] * len(windows)
                anomaly += [is_anomaly] * len(windows)
            shape = (len(features), settings.size, settings.size, 1)
            yield (min(CHUNK, len(clips) - start),
                   {"x": np.asarray(features, np.float32).reshape(shape),
                    "y": np.asarray(ids, np.int32), "clip": np.asarray(clip_index, np.int32),
                    "anomaly": np.asarray(anomaly, bool)})

    entry = cache.sharded(cache_dir or cache.default_cache_dir(), f"ad-{split}", key, chunks,
                          len(clips))
    entry.warn_skipped("corrupt, empty or too short audio files", folder)
    return Split(
        task="ad", name=split, x=entry.array("x"), y=np.asarray(entry.array("y")),
        labels=labels, clip=np.asarray(entry.array("clip")),
        anomaly=np.asarray(entry.array("anomaly")), files=tuple(str(c[0]) for c in clips),
        entry=entry)


def training_dataset(split, batch_size, seed, augment=True, mixup=0.0, in_memory=False):
    """Training batches of anomaly-detection windows, with optional mixup.

    The reader's side of `mnas.datasets.training_dataset` (which documents `split`,
    `batch_size`, `seed`, `augment` and `in_memory`). `mixup` is the alpha of the Beta
    distribution of mixup weights (MicroNets uses 0.3; 0, the default, turns mixup off); with
    mixup the labels are one-hot float vectors (use categorical cross-entropy), otherwise
    integer IDs.
    """
    import tensorflow as tf

    if mixup < 0:
        raise ValueError(f"Invalid value for `mixup`: expected alpha >= 0, received {mixup}.")
    if not augment or mixup == 0:
        return stream.split_batches(split, batch_size, seed, in_memory)
    classes = len(split.labels)

    def batch_fn(x, y, seed_pair):
        seeds = tf.random.experimental.stateless_split(seed_pair, 3)
        n = tf.shape(x)[0]
        # Beta(a, a) as a ratio of two Gamma(a) draws.
        g1 = tf.random.stateless_gamma([n], seeds[0], alpha=mixup)
        g2 = tf.random.stateless_gamma([n], seeds[1], alpha=mixup)
        weight = g1 / tf.maximum(g1 + g2, 1e-12)
        order = tf.argsort(tf.random.stateless_uniform([n], seeds[2]))
        one_hot = tf.one_hot(y, classes)
        wx = tf.reshape(weight, [-1, 1, 1, 1])
        wy = tf.reshape(weight, [-1, 1])
        return (wx * x + (1 - wx) * tf.gather(x, order),
                wy * one_hot + (1 - wy) * tf.gather(one_hot, order))

    return stream.split_batches(split, batch_size, seed, in_memory, batch_fn=batch_fn)


def roc_auc(scores, positive):
    """Area under the ROC curve (Mann-Whitney statistic, ties counted half), in numpy.

    Args:
        scores: higher means more likely positive.
        positive: bool per score.

    Returns:
        The AUC, or nan when only one class is present.
    """
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def clip_scores(scores, split):
    """Anomaly score, machine ID and anomaly label of each test clip, MicroNets / DCASE style.

    A window's anomaly score is the negative softmax output of its true machine ID; a clip's
    score is the mean over its windows.

    Args:
        scores: softmax outputs (N windows, machine IDs) of the model on `split.x`.
        split: the AD test `Split` (with `clip` and `anomaly`).

    Returns:
        (score, machine ID index, anomalous) arrays, one entry per clip.
    """
    scores = np.asarray(scores, np.float64)
    if split.clip is None or scores.shape != (len(split.y), len(split.labels)):
        raise ValueError(
            f"Invalid value for `scores`: expected softmax outputs of shape "
            f"{(len(split.y), len(split.labels))} for an anomaly-detection split, received "
            f"shape {scores.shape} for a {split.task!r} split."
        )
    if not split.anomaly.any():
        raise ValueError(
            f"Invalid value for `split`: expected a split with anomalous clips (the test split), "
            f"received the {split.name!r} split, which has none."
        )
    window_scores = -scores[np.arange(len(split.y)), split.y]
    _, first, inverse = np.unique(split.clip, return_index=True, return_inverse=True)
    clip_score = np.bincount(inverse, window_scores) / np.bincount(inverse)
    return clip_score, split.y[first], split.anomaly[first]


def anomaly_auc(scores, split):
    """ROC AUC per machine ID and their mean, MicroNets / DCASE style (see `clip_scores`).

    Args:
        scores: softmax outputs (N windows, machine IDs) of the model on `split.x`.
        split: the AD test `Split` (with `clip` and `anomaly`).

    Returns:
        {machine id: AUC, ..., "mean": mean over IDs}.
    """
    clip_score, clip_id, clip_anomaly = clip_scores(scores, split)
    result = {}
    for index, name in enumerate(split.labels):
        mine = clip_id == index
        result[name] = roc_auc(clip_score[mine], clip_anomaly[mine])
    result["mean"] = float(np.nanmean(list(result.values())))
    return result
