"""Tests of mnas.datasets.vww on a small person / non_person tree built by the test."""

import numpy as np
import pytest
from PIL import Image

from mnas.datasets import vww
from mnas.errors import DatasetError


@pytest.fixture
def tree(tmp_path):
    """20 bright person images and 20 dark non_person images of 64x48, plus a corrupt one."""
    root = tmp_path / "vw_coco2014_96"
    for folder, level in (("person", 200), ("non_person", 40)):
        (root / folder).mkdir(parents=True)
        for n in range(20):
            pixels = np.full((48, 64, 3), level, np.uint8)
            pixels[:, :32, 0] = 255  # left half red, to see flips
            Image.fromarray(pixels).save(root / folder / f"COCO_{n:04d}.jpg")
    (root / "person" / "COCO_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "person" / "labels.txt").write_text("ignored")
    return root


def load(root, split, **options):
    return vww.load(root, split, cache_dir=root.parent / "cache", **options)


def test_splits_partition_the_images(tree):
    with pytest.warns(UserWarning, match="Skipped 1 corrupt or unreadable image files"):
        splits = {s: load(tree, s, validation_share=0.2, test_share=0.2)
                  for s in ("train", "validation", "test")}
    assert all(len(s.files) == len(s) for s in splits.values())
    assert sum(len(s) for s in splits.values()) == 40
    files = [set(s.files) for s in splits.values()]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert all(len(s) > 0 for s in splits.values())


@pytest.mark.filterwarnings("ignore:Skipped 1 corrupt")
def test_images_are_resized_scaled_and_labelled(tree):
    train = load(tree, "train", image_size=50, grayscale=True, test_share=0, validation_share=0)
    assert train.x.shape == (40, 50, 50, 1) and train.x.dtype == np.float32
    assert train.labels == ("non_person", "person")
    pixels = np.asarray(train.x)
    assert 0 <= pixels.min() and pixels.max() <= 1
    person = train.x[train.y == 1][..., 0]
    assert len(person) == 20 and person[:, :, 40].mean() == pytest.approx(200 / 255, abs=0.02)
    rgb = load(tree, "train", image_size=96, test_share=0, validation_share=0)
    assert rgb.x.shape == (40, 96, 96, 3)


def test_presplit_folders_are_used_as_they_are(tree, tmp_path):
    presplit = tmp_path / "presplit"
    for split in ("train", "validation", "test"):
        for folder in ("person", "non_person"):
            (presplit / split / folder).mkdir(parents=True)
            Image.new("L", (8, 8)).save(presplit / split / folder / f"{split}.png")
    assert load(presplit, "validation").files[0].endswith("validation/non_person/validation.png")


@pytest.mark.filterwarnings("ignore:Skipped 1 corrupt")
def test_max_per_class_bounds_the_images(tree):
    assert len(load(tree, "train", max_per_class=3, test_share=0, validation_share=0)) == 6


@pytest.mark.filterwarnings("ignore:Skipped 1 corrupt")
def test_bad_arguments_and_layouts(tree, tmp_path):
    with pytest.raises(ValueError, match="Invalid value for `image_size`.*received 96.0"):
        load(tree, "train", image_size=96.0)
    with pytest.raises(DatasetError, match="person.*non_person.*vw_coco2014_96.*make data"):
        vww.load(tmp_path / "nowhere", "train")
    (tmp_path / "only_person" / "person").mkdir(parents=True)
    with pytest.raises(DatasetError, match="expected the folder .*non_person"):
        load(tmp_path / "only_person", "train")


@pytest.mark.filterwarnings("ignore:Skipped 1 corrupt")
def test_training_dataset_flips_and_crops(tree):
    train = load(tree, "train", image_size=32, test_share=0, validation_share=0)
    x, y = next(iter(vww.training_dataset(train, batch_size=40, seed=0)))
    assert x.shape == (40, 32, 32, 3) and y.shape == (40,)
    red_left = (x[:, :, :4, 0].numpy().mean(axis=(1, 2)) > 0.9)
    assert 0 < red_left.sum() < 40  # some images were flipped, some were not
    plain, _ = next(iter(vww.training_dataset(train, batch_size=40, seed=0, augment=False)))
    assert np.isin(plain.numpy()[:, 0, 0, 0], train.x[:, 0, 0, 0]).all()


def test_coco_tfrecords_are_read(tmp_path):
    import io

    import tensorflow as tf

    root = tmp_path / "vww_records"
    root.mkdir()

    def example(level, label):
        buffer = io.BytesIO()
        Image.fromarray(np.full((40, 30, 3), level, np.uint8)).save(buffer, "JPEG")
        feature = {
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[buffer.getvalue()])),
            "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    for name, count in (("train.record-00000-of-00002", 20), ("train.record-00001-of-00002", 20),
                        ("val.record-00000-of-00001", 6)):
        with tf.io.TFRecordWriter(str(root / name)) as writer:
            for n in range(count):
                writer.write(example(200 if n % 2 else 40, n % 2))
    train, validation, test = (load(root, s, image_size=16, grayscale=True, validation_share=0.25)
                               for s in ("train", "validation", "test"))
    assert len(train) + len(validation) == 40 and len(test) == 6
    assert train.x.shape[1:] == (16, 16, 1)
    pixels = np.asarray(test.x)[:, 8, 8, 0]
    np.testing.assert_allclose(pixels, np.where(test.y == 1, 200, 40) / 255, atol=0.02)
    assert len(load(root, "train", image_size=16, max_per_class=3)) == 6
