"""Visual wake words: person / no-person images in the MLPerf Tiny folder layout."""

import io

import numpy as np

from mnas.datasets import cache, stream
from mnas.datasets.features import load_image
from mnas.datasets.split import Split, carve, check_max_per_class, check_split, require_dir
from mnas.errors import DatasetError

LABELS = ("non_person", "person")
LAYOUT = (
    "DIR/person/*.jpg and DIR/non_person/*.jpg (the MLPerf Tiny vw_coco2014_96 preparation), "
    "optionally split as DIR/{train,validation,test}/{person,non_person}/; or the COCO-derived "
    "TFRecords of the TensorFlow Models VWW script: DIR/train.record-*, DIR/val.record-* "
    "(image/encoded, image/class/label)"
)
# COCO-derived TFRecords: train.record-* give train and validation (carved by record), and
# val.record-* the test split, as MLPerf Tiny evaluates on COCO's validation images.
RECORD_GLOBS = {"train": ("train.record*", "train-*.tfrecord*"),
                "test": ("val.record*", "val-*.tfrecord*")}
CHUNK = 512
REAL_SOURCE = (
    "https://www.silabs.com/public/files/github/machine_learning/benchmarks/datasets/"
    "vw_coco2014_96.tar.gz (or build it from COCO 2014 with the MLPerf Tiny VWW scripts)"
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
IMAGE_SIZES = (50, 96, 128, 160)


def _files(root, split, validation_share, test_share):
    """(path, label) of the images of a split: pre-split folders, or carved by name hash."""
    presplit = root / split
    files = []
    for label, name in enumerate(LABELS):
        folder = presplit / name if presplit.is_dir() else root / name
        if not folder.is_dir():
            raise DatasetError(
                f"Invalid visual-wake-words dataset at {str(root)!r}: expected the folder "
                f"{str(folder)!r} of the layout {LAYOUT}; received none. Get the real dataset "
                f"from {REAL_SOURCE}, or run `make data` for the embedded synthetic one."
            )
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if presplit.is_dir() or carve(f"{name}/{path.name}", validation_share,
                                          test_share) == split:
                files.append((path, label))
    return files


def _record_files(root, which):
    return sorted({p for pattern in RECORD_GLOBS[which] for p in root.glob(pattern)})


def _records(paths, split, validation_share, max_per_class):
    """(encoded image, label) of the TFRecords' examples that belong to `split`."""
    import tensorflow as tf

    counts = [0, 0]
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
    for index, record in enumerate(tf.data.TFRecordDataset([str(p) for p in paths])):
        if split != "test" and carve(f"record-{index}", validation_share) != split:
            continue
        example = tf.io.parse_single_example(record, spec)
        label = int(example["image/class/label"])
        if max_per_class is not None and counts[label] >= max_per_class:
            if min(counts) >= max_per_class:
                return
            continue
        counts[label] += 1
        yield example["image/encoded"].numpy(), label


def load(data_dir, split, cache_dir=None, image_size=96, grayscale=False,
         validation_share=0.1, test_share=0.1, max_per_class=None):
    """Reads one split of a person / no-person image folder, resized, in [0, 1].

    Without train/validation/test subfolders, images are assigned to splits by a hash of their
    names (`test_share` to test, `validation_share` to validation, the rest to train), the
    same on every run. From the COCO-derived TFRecords, train.record-* give train and
    validation, val.record-* the test split. Pixels are cached as uint8 shards; `x` reads
    them by memory map as float32.

    Args:
        data_dir: the dataset folder (layout in `LAYOUT`).
        split: "train", "validation" or "test".
        cache_dir: where computed features are kept. Defaults to `cache.default_cache_dir()`.
        image_size: side of the square model input (MicroNets uses 50, 96, 128 or 160).
            Defaults to 96.
        grayscale: one channel instead of RGB. Defaults to False.
        validation_share: share of images for validation. Defaults to 0.1.
        test_share: share of images for test. Defaults to 0.1.
        max_per_class: keep at most this many images of each class (the first by name), to
            bound memory on the full 115k-image dataset. Defaults to all.

    Returns:
        A `Split` with `x` float32 (N, image_size, image_size, 1 or 3) in [0, 1], `y` 0 for no
        person and 1 for person.
    """
    check_split(split)
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(
            f"Invalid value for `image_size`: expected an integer >= 8 (MicroNets uses "
            f"{IMAGE_SIZES}), received {image_size!r}."
        )
    check_max_per_class(max_per_class)
    root = require_dir(data_dir, "visual-wake-words", LAYOUT, REAL_SOURCE)
    described = {"split": split, "image_size": image_size, "grayscale": grayscale,
                 "validation_share": validation_share, "test_share": test_share,
                 "max_per_class": max_per_class}
    records = _record_files(root, "test" if split == "test" else "train")
    if records:
        items = lambda: _records(records, split, validation_share, max_per_class)  # noqa: E731
        sources, total, names = records, None, None
    else:
        listed = _files(root, split, validation_share, test_share)
        if max_per_class is not None:
            listed = [f for label in range(len(LABELS))
                      for f in [f for f in listed if f[1] == label][:max_per_class]]
        items = lambda: iter(listed)  # noqa: E731
        names = [str(f[0]) for f in listed]
        sources, total = [f[0] for f in listed], len(listed)
    key = cache.cache_key("vww", described, sources)
    shape = (image_size, image_size, 1 if grayscale else 3)

    def chunks(skips):
        images, labels, index = [], [], []
        for i, (item, label) in enumerate(items()):
            try:
                image = load_image(io.BytesIO(item) if isinstance(item, bytes) else item,
                                   image_size, grayscale)
            except (OSError, ValueError, SyntaxError) as error:
                skips.skip(item if not isinstance(item, bytes) else "record", str(error))
                continue
            images.append(np.round(image * 255).astype(np.uint8))
            labels.append(label)
            index.append(i)
            if len(images) == CHUNK:
                yield CHUNK, {"x": np.stack(images), "y": np.asarray(labels, np.int32),
                              "file": np.asarray(index, np.int32)}
                images, labels, index = [], [], []
        yield len(images), {"x": np.asarray(images, np.uint8).reshape((-1,) + shape),
                            "y": np.asarray(labels, np.int32), "file": np.asarray(index, np.int32)}

    entry = cache.sharded(cache_dir or cache.default_cache_dir(), f"vww-{split}", key, chunks,
                          total)
    entry.warn_skipped("corrupt or unreadable image files", root)
    return Split(task="vww", name=split, x=entry.array("x", _to_float),
                 y=np.asarray(entry.array("y")), labels=LABELS, entry=entry,
                 files=() if names is None else tuple(
                     names[i] for i in np.asarray(entry.array("file")).tolist()))


def _to_float(pixels):
    return np.asarray(pixels, np.float32) / 255.0


def training_dataset(split, batch_size, seed, augment=True, min_crop=0.8, in_memory=False):
    """Training batches of images with random horizontal flips and crops.

    The reader's side of `mnas.datasets.training_dataset` (which documents `split`,
    `batch_size`, `seed`, `augment` and `in_memory`). Crops keep a random side between
    `min_crop` (default 0.8) and 1 of the image and are resized back.
    """
    import tensorflow as tf

    options = {"decode": lambda x: tf.cast(x, tf.float32) / 255.0}
    if not augment:
        return stream.split_batches(split, batch_size, seed, in_memory, **options)
    height, width, channels = split.x.shape[1:]

    def example_fn(x, y, seed_pair):
        seeds = tf.random.experimental.stateless_split(seed_pair, 3)
        x = tf.image.stateless_random_flip_left_right(x, seeds[0])
        scale = tf.random.stateless_uniform([], seeds[1], min_crop, 1.0)
        size = tf.cast(tf.round(scale * [height, width]), tf.int32)
        x = tf.image.stateless_random_crop(x, tf.concat([size, [channels]], 0), seeds[2])
        return tf.image.resize(x, [height, width]), y

    return stream.split_batches(split, batch_size, seed, in_memory, example_fn=example_fn,
                                **options)
