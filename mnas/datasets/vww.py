"""Visual wake words: person / no-person images in the MLPerf Tiny folder layout."""

import warnings

from mnas.datasets import cache, pipeline
from mnas.datasets.features import load_image
from mnas.datasets.split import Split, as_arrays, carve, check_split, require_dir
from mnas.errors import DatasetError

LABELS = ("non_person", "person")
LAYOUT = (
    "DIR/person/*.jpg and DIR/non_person/*.jpg (the MLPerf Tiny vw_coco2014_96 preparation), "
    "optionally split as DIR/{train,validation,test}/{person,non_person}/"
)
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


def load(data_dir, split, cache_dir=None, image_size=96, grayscale=False,
         validation_share=0.1, test_share=0.1, max_per_class=None):
    """Reads one split of a person / no-person image folder, resized, in [0, 1].

    Without train/validation/test subfolders, images are assigned to splits by a hash of their
    names (`test_share` to test, `validation_share` to validation, the rest to train), the
    same on every run.

    Args:
        data_dir: the dataset folder (layout in `LAYOUT`).
        split: "train", "validation" or "test".
        cache_dir: where computed features are kept. Defaults to `cache.default_cache_dir`.
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
    root = require_dir(data_dir, "visual-wake-words", LAYOUT, REAL_SOURCE)
    files = _files(root, split, validation_share, test_share)
    if max_per_class is not None:
        files = [f for label in range(len(LABELS))
                 for f in [f for f in files if f[1] == label][:max_per_class]]
    described = {"split": split, "image_size": image_size, "grayscale": grayscale,
                 "validation_share": validation_share, "test_share": test_share}
    key = cache.cache_key("vww", described, [f[0] for f in files])

    def compute():
        images, labels, bad = [], [], []
        for path, label in files:
            try:
                images.append(load_image(path, image_size, grayscale))
                labels.append(label)
            except (OSError, ValueError, SyntaxError) as error:
                bad.append(f"{path}: {error}")
        if bad:
            warnings.warn(
                f"Skipped {len(bad)} corrupt or unreadable image files under {root} "
                f"(first: {bad[0]}).", stacklevel=3)
        shape = (image_size, image_size, 1 if grayscale else 3)
        x, y = as_arrays(images, labels, shape)
        return {"x": x, "y": y}

    arrays = cache.cached(cache_dir or cache.default_cache_dir(root), f"vww-{split}", key, compute)
    return Split(task="vww", name=split, x=arrays["x"], y=arrays["y"], labels=LABELS,
                 files=tuple(str(f[0]) for f in files))


def training_dataset(split, batch_size, seed, augment=True, min_crop=0.8):
    """Training batches of images with random horizontal flips and crops.

    Args:
        split: a VWW `Split`.
        batch_size: examples per batch.
        seed: seed of shuffling and augmentation.
        augment: False for plain shuffled batches.
        min_crop: crops keep a random side between `min_crop` and 1 of the image and are
            resized back. Defaults to 0.8.

    Returns:
        A `tf.data.Dataset` of (x, y) batches.
    """
    import tensorflow as tf

    if not augment:
        return pipeline.batches(split.x, split.y, batch_size, seed)
    height, width, channels = split.x.shape[1:]

    def example_fn(x, y, seed_pair):
        seeds = tf.random.experimental.stateless_split(seed_pair, 3)
        x = tf.image.stateless_random_flip_left_right(x, seeds[0])
        scale = tf.random.stateless_uniform([], seeds[1], min_crop, 1.0)
        size = tf.cast(tf.round(scale * [height, width]), tf.int32)
        x = tf.image.stateless_random_crop(x, tf.concat([size, [channels]], 0), seeds[2])
        return tf.image.resize(x, [height, width]), y

    return pipeline.batches(split.x, split.y, batch_size, seed, example_fn=example_fn)
