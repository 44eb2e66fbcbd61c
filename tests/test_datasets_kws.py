"""Tests of mnas.datasets.kws on a small Speech Commands v2 tree built by the test."""

import math

import numpy as np
import pytest
import soundfile

from mnas.datasets import features, kws, pipeline
from mnas.datasets.audio import write_wav
from mnas.errors import DatasetError

RATE = 16000
SPEAKERS = ("aaaa0001", "bbbb0002", "cccc0003", "dddd0004", "eeee0005", "ffff0006")


def tone(frequency, seconds=0.6):
    t = np.arange(int(seconds * RATE)) / RATE
    return 0.3 * np.sin(2 * np.pi * frequency * t)


@pytest.fixture
def tree(tmp_path):
    """yes / no / up / bed / cat clips of six speakers; speaker 5 validation, 6 test."""
    root = tmp_path / "speech_commands"
    for index, word in enumerate(("yes", "no", "up", "bed", "cat")):
        for speaker in SPEAKERS:
            write_wav(root / word / f"{speaker}_nohash_0.wav", tone(200 + 150 * index), RATE)
    rng = np.random.default_rng(0)
    write_wav(root / "_background_noise_" / "white.wav", 0.2 * rng.normal(size=20 * RATE), RATE)
    (root / "validation_list.txt").write_text(
        "".join(f"{w}/{SPEAKERS[4]}_nohash_0.wav\n" for w in ("yes", "no", "up", "bed", "cat")))
    (root / "testing_list.txt").write_text(
        "".join(f"{w}/{SPEAKERS[5]}_nohash_0.wav\n" for w in ("yes", "no", "up", "bed", "cat")))
    return root


def load(root, split, **options):
    return kws.load(root, split, cache_dir=root.parent / "cache", **options)


def test_splits_follow_the_list_files(tree):
    train = load(tree, "train", silence_share=0.5, unknown_share=0.5)
    # 4 speakers x 3 keywords; ceil(0.5 * 12) unknown (of 8) and silence clips.
    assert train.x.shape == (12 + 6 + 6, 49, 10, 1) and train.x.dtype == np.float32
    assert np.bincount(train.y, minlength=12).tolist() == [4, 4, 4] + [0] * 7 + [6, 6]
    assert train.labels == kws.LABELS and len(train.labels) == 12
    assert not any(SPEAKERS[4] in f or SPEAKERS[5] in f for f in train.files)
    test = load(tree, "test", silence_share=0.5, unknown_share=0.5)
    assert sorted(test.y.tolist()) == [0, 1, 2, 10, 10, 11, 11]
    assert all(SPEAKERS[5] in f for f in test.files if f.endswith(".wav"))
    assert len(train.files) == len(train) and "noise" in train.extras


def test_default_shares_are_ten_percent(tree):
    train = load(tree, "train")
    assert (train.y == kws.SILENCE).sum() == math.ceil(0.1 * 12)
    assert (train.y == kws.UNKNOWN).sum() == math.ceil(0.1 * 12)


def test_features_are_the_mfccs_of_the_padded_clip(tree):
    train = load(tree, "train", silence_share=0, unknown_share=0)
    index = train.files.index(f"no/{SPEAKERS[0]}_nohash_0.wav")
    # The clip as the wav file holds it (16-bit samples): with the fixed -80 dB floor, the
    # quantization noise of the tone's empty bands shows in the features.
    wave, _ = soundfile.read(str(tree / "no" / f"{SPEAKERS[0]}_nohash_0.wav"), dtype="float32")
    np.testing.assert_allclose(wave, tone(350), atol=1e-4)
    clip = np.pad(wave, (0, RATE - len(wave)))
    np.testing.assert_allclose(train.x[index], features.mfcc(clip), atol=0.02)


def test_silence_is_cut_from_the_split_share_of_the_noise(tree):
    split = load(tree, "validation", silence_share=1.0, unknown_share=0)
    silence = split.x[split.y == kws.SILENCE]
    assert len(silence) == 3
    assert np.all(np.isfinite(silence))


def test_bad_files_are_skipped_with_one_warning(tree):
    (tree / "yes" / "zzzz0009_nohash_0.wav").write_bytes(b"not a wav file")
    soundfile.write(str(tree / "no" / "zzzz0009_nohash_0.wav"), np.zeros(0), RATE)
    write_wav(tree / "up" / "zzzz0009_nohash_0.wav", tone(300, seconds=0.01), RATE)
    with pytest.warns(UserWarning, match="Skipped 3 corrupt, empty or too short audio files"):
        train = load(tree, "train", silence_share=0, unknown_share=0)
    assert len(train) == 12


def test_other_sample_rates_are_resampled(tree):
    t = np.arange(int(0.6 * 44100)) / 44100
    soundfile.write(str(tree / "yes" / f"{SPEAKERS[0]}_nohash_0.wav"),
                    0.3 * np.sin(2 * np.pi * 200 * t), 44100)
    train = load(tree, "train", silence_share=0, unknown_share=0)
    index = train.files.index(f"yes/{SPEAKERS[0]}_nohash_0.wav")
    reference = features.mfcc(np.pad(tone(200), (0, RATE - int(0.6 * RATE))))
    np.testing.assert_allclose(train.x[index][:25], reference[:25], atol=0.5)


def test_cache_is_used_and_invalidated(tree):
    cache = tree.parent / "cache"
    first = load(tree, "test")
    entries = set(cache.glob("kws-test-*/meta.json"))
    assert len(entries) == 1
    load(tree, "test")
    assert set(cache.glob("kws-test-*/meta.json")) == entries
    narrower = load(tree, "test", n_mfcc=8)
    assert narrower.x.shape[1:] == (49, 8, 1)
    assert len(set(cache.glob("kws-test-*/meta.json"))) == 2
    write_wav(tree / "yes" / f"{SPEAKERS[5]}_nohash_0.wav", tone(3000), RATE)
    changed = load(tree, "test")
    index = first.files.index(f"yes/{SPEAKERS[5]}_nohash_0.wav")
    assert not np.allclose(changed.x[index], first.x[index])


def test_missing_directory_names_layout_source_and_make_data(tmp_path):
    with pytest.raises(DatasetError, match="Speech Commands v2.*speech_commands_v0.02.*make data"):
        kws.load(tmp_path / "nowhere", "train")


def test_missing_list_file_is_an_error(tree):
    (tree / "testing_list.txt").unlink()
    with pytest.raises(DatasetError, match="expected the list file testing_list.txt"):
        load(tree, "train")


def test_unknown_split_is_an_error(tree):
    with pytest.raises(ValueError, match="Invalid value for `split`.*received 'dev'"):
        load(tree, "dev")


def test_augmentation_is_fresh_every_epoch_and_fixed_by_seed_and_epoch(tree):
    train = load(tree, "train", silence_share=0, unknown_share=0)
    with pipeline.over_epochs(0, 3):
        epochs = list(kws.training_dataset(train, batch_size=100, seed=7, time_masks=0,
                                           frequency_masks=0).as_numpy_iterator())
    assert len(epochs) == 3 and epochs[0][0].shape == (12, 49, 10, 1)
    order = [np.argsort(y, kind="stable") for _, y in epochs]
    x = [e[0][o] for e, o in zip(epochs, order)]
    clean = np.asarray(train.x)[np.argsort(train.y, kind="stable")]
    assert not np.allclose(x[0], clean, atol=1e-3) and not np.allclose(x[0], x[1], atol=1e-3)
    # Epoch 2 alone, as a resumed run reads it, is the third epoch of the full run.
    with pipeline.over_epochs(2, 3):
        resumed = list(kws.training_dataset(train, batch_size=100, seed=7, time_masks=0,
                                            frequency_masks=0).as_numpy_iterator())
    np.testing.assert_array_equal(resumed[0][0], epochs[2][0])


def test_noise_mixing_adds_noise_power(tree):
    silent = kws.Augmentation(background_frequency=0.0, time_shift_ms=0.0)
    loud = kws.Augmentation(background_frequency=1.0, background_volume=1.0, time_shift_ms=0.0,
                            clean_share=0.0)
    unmasked = {"time_masks": 0, "frequency_masks": 0, "batch_size": 100, "seed": 0}
    plain = load(tree, "train", silence_share=0, unknown_share=0, augmentation=silent)
    (x_plain, y_plain), = kws.training_dataset(plain, **unmasked).as_numpy_iterator()
    order = np.argsort(y_plain, kind="stable")
    clean = np.asarray(plain.x)[np.argsort(plain.y, kind="stable")]
    np.testing.assert_allclose(x_plain[order], clean, atol=1e-3)
    noisy = load(tree, "train", silence_share=0, unknown_share=0, augmentation=loud)
    (x_noisy, y_noisy), = kws.training_dataset(noisy, **unmasked).as_numpy_iterator()
    # White noise raises the energy (0th coefficient) of the quiet frames after each tone.
    energy = x_noisy[np.argsort(y_noisy, kind="stable")][:, -5:, 0, 0]
    assert np.all(energy > clean[:, -5:, 0, 0] + 1.0)


def test_training_dataset_batches_with_specaugment(tree):
    train = load(tree, "train", silence_share=0.5, unknown_share=0.5)
    dataset = kws.training_dataset(train, batch_size=5, seed=3)
    batches = list(dataset.as_numpy_iterator())
    assert [len(y) for _, y in batches] == [5] * 4 + [4]
    x = np.concatenate([b[0] for b in batches])
    assert x.shape == train.x.shape and x.dtype == np.float32
    assert sorted(np.concatenate([b[1] for b in batches])) == sorted(train.y)
    # Masks fill whole runs of frames with the training mean of each coefficient.
    fill = np.asarray(train.x).mean(axis=(0, 1))[:, 0]
    masked_frames = np.all(np.isclose(x[..., 0], fill, atol=1e-4), axis=2)
    assert masked_frames.any()
    again = list(kws.training_dataset(train, batch_size=5, seed=3).as_numpy_iterator())
    np.testing.assert_array_equal(again[0][0], batches[0][0])
    second_epoch = list(dataset.as_numpy_iterator())
    assert not np.array_equal(second_epoch[0][0], batches[0][0])


def test_streamed_and_in_memory_batches_are_the_same(tree):
    train = load(tree, "train", silence_share=0.5, unknown_share=0.5)
    options = {"batch_size": 4, "seed": 1, "augment": False}
    with pipeline.over_epochs(0, 2):
        streamed = np.concatenate([x for x, _ in kws.training_dataset(train, **options)
                                   .as_numpy_iterator()])
        in_memory = np.concatenate([x for x, _ in kws.training_dataset(
            train, in_memory=True, **options).as_numpy_iterator()])
    assert streamed.shape == in_memory.shape == (2 * len(train), 49, 10, 1)
    np.testing.assert_allclose(np.sort(streamed, axis=0), np.sort(in_memory, axis=0), atol=1e-4)


def test_skipped_files_are_counted_once_and_reported_on_every_load(tree):
    (tree / "yes" / "zzzz0009_nohash_0.wav").write_bytes(b"not a wav file")
    (tree / "_background_noise_" / "broken.wav").write_bytes(b"not a wav file")
    for _ in range(2):  # computed, then read from the cache
        with pytest.warns(UserWarning, match="Skipped 2 corrupt") as caught:
            load(tree, "train")
        assert len([w for w in caught if "Skipped" in str(w.message)]) == 1


def test_test_archive_layout(tree, tmp_path):
    archive = tmp_path / "speech_commands_test_set_v0.02"
    for folder, frequency in (("yes", 200), ("no", 350), ("_unknown_", 900)):
        write_wav(archive / folder / "aaaa0001_nohash_0.wav", tone(frequency), RATE)
    write_wav(archive / "_silence_" / "silence_0.wav", np.zeros(RATE), RATE)
    write_wav(archive / "_silence_" / "silence_1.wav", np.zeros(RATE), RATE)
    assert kws.is_test_archive(archive) and not kws.is_test_archive(tree)
    test = kws.load(archive, "test", cache_dir=tmp_path / "cache")
    assert sorted(test.y.tolist()) == [0, 1, kws.SILENCE, kws.SILENCE, kws.UNKNOWN]
    separate = load(tree, "test", test_dir=archive)
    assert len(separate) == 5 and separate.files == test.files
    with pytest.raises(DatasetError, match="test archive.*received 'train'"):
        kws.load(archive, "train", cache_dir=tmp_path / "cache")


def test_max_per_class_keeps_a_subset(tree):
    train = load(tree, "train", silence_share=0.5, unknown_share=0.5, max_per_class=2)
    assert np.bincount(train.y, minlength=12).tolist() == [2, 2, 2] + [0] * 7 + [2, 2]
    with pytest.raises(ValueError, match="`max_per_class`: expected a positive integer"):
        load(tree, "train", max_per_class=0)


def test_training_dataset_needs_the_train_split_to_augment(tree):
    with pytest.raises(ValueError, match="expected the train split.*received the 'test' split"):
        kws.training_dataset(load(tree, "test"), batch_size=2, seed=0)
    plain = kws.training_dataset(load(tree, "test"), batch_size=2, seed=0, augment=False)
    assert next(iter(plain))[0].shape[1:] == (49, 10, 1)


def test_pipeline_mfccs_are_those_of_the_features_module(tree):
    import tensorflow as tf

    from mnas.datasets import kws_augment

    settings = features.MfccSettings()
    db = np.random.default_rng(0).uniform(-130, 40, (3, 49, 40)).astype(np.float32)
    np.testing.assert_allclose(kws_augment.tf_mfcc_from_db(tf.constant(db), settings).numpy(),
                               features.mfcc_of_mel_db(db, settings)[..., None], atol=1e-3)


def test_standardized_subset_streams_its_own_rows_standardized(tree):
    from mnas.datasets import split as split_module

    train = load(tree, "train", silence_share=0.5, unknown_share=0.5)
    mean, std = split_module.moments(train.x)
    part = split_module.standardize(split_module.subset(train, [0, 2, 3, 7]), mean, std)
    expected = (np.asarray(train.x)[[0, 2, 3, 7]] - mean) / std
    np.testing.assert_allclose(np.asarray(part.x), expected, atol=1e-5)
    options = {"batch_size": 3, "seed": 1, "augment": False}
    for in_memory in (False, True):
        batches = list(kws.training_dataset(part, in_memory=in_memory, **options)
                       .as_numpy_iterator())
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        order = np.lexsort(x.reshape(len(x), -1).T)
        want = np.lexsort(expected.reshape(len(expected), -1).T)
        np.testing.assert_allclose(x[order], expected[want], atol=1e-4)
        np.testing.assert_array_equal(y[order], train.y[[0, 2, 3, 7]][want])
    # Augmented, unmasked and without noise or shift: the same standardised features.
    quiet = kws.Augmentation(background_frequency=0.0, time_shift_ms=0.0)
    plain = split_module.standardize(split_module.subset(
        load(tree, "train", silence_share=0.5, unknown_share=0.5, augmentation=quiet),
        [0, 2, 3, 7]), mean, std)
    (x, _), (x2, _) = kws.training_dataset(plain, batch_size=3, seed=1, time_masks=0,
                                           frequency_masks=0).as_numpy_iterator()
    x = np.concatenate([x, x2])
    np.testing.assert_allclose(np.sort(x.ravel()), np.sort(expected.ravel()), atol=1e-4)
