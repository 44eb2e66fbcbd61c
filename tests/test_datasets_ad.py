"""Tests of mnas.datasets.ad on a small DCASE2020 task 2 tree built by the test."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mnas.datasets import ad
from mnas.datasets.audio import write_wav
from mnas.errors import DatasetError

RATE = 16000


def hum(frequency, seconds=3.0, anomaly=False):
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * frequency * t)
    return wave + (0.3 * np.sin(2 * np.pi * 3000 * t) if anomaly else 0)


@pytest.fixture
def tree(tmp_path):
    """slider with ids 00 and 02: 12 train clips each, 2 normal + 2 anomalous test clips."""
    machine = tmp_path / "dcase" / "slider"
    for machine_id, frequency in (("id_00", 100), ("id_02", 400)):
        for n in range(12):
            write_wav(machine / "train" / f"normal_{machine_id}_{n:08d}.wav", hum(frequency), RATE)
        for n in range(2):
            write_wav(machine / "test" / f"normal_{machine_id}_{n:08d}.wav", hum(frequency), RATE)
            write_wav(machine / "test" / f"anomaly_{machine_id}_{n:08d}.wav",
                      hum(frequency, anomaly=True), RATE)
    (machine / "train" / "notes.txt").write_text("not audio")
    return tmp_path / "dcase"


def load(root, split, **options):
    return ad.load(root, split, cache_dir=root.parent / "cache", **options)


def test_test_split_has_windows_clips_and_anomaly_flags(tree):
    test = load(tree, "test")
    # 3 s clips: 1 + 48000 // 512 = 94 frames, so 1 + (94 - 64) // 32 = 1 window each.
    assert test.x.shape == (8, 32, 32, 1) and test.x.dtype == np.float32
    assert test.labels == ("id_00", "id_02")
    assert test.anomaly.tolist() == [True] * 4 + [False] * 4  # files in name order
    assert test.clip.tolist() == list(range(8))
    assert test.y.tolist() == [0, 0, 1, 1] * 2
    assert len(test.files) == 8


def test_validation_is_a_stable_disjoint_share_of_train(tree):
    train = load(tree, "train", validation_share=0.3)
    validation = load(tree, "validation", validation_share=0.3)
    assert len(train) + len(validation) == 24
    assert 0 < len(validation) < 24 and not set(train.files) & set(validation.files)
    assert not validation.anomaly.any()
    assert load(tree, "validation", validation_share=0.3).files == validation.files


def test_window_hop_sets_the_windows_per_clip(tree):
    assert len(load(tree, "test", window_hop=8)) == 8 * (1 + (94 - 64) // 8)


def test_a_machine_folder_can_be_named_or_given(tree):
    assert load(tree / "slider", "test").labels == ("id_00", "id_02")
    assert load(tree, "test", machine="slider").labels == ("id_00", "id_02")
    (tree / "fan" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="received machine folders fan, slider"):
        load(tree, "test")
    with pytest.raises(DatasetError, match="Invalid value for `machine`.*received 'pump'"):
        load(tree, "test", machine="pump")


def test_too_short_and_corrupt_clips_are_skipped(tree):
    test = tree / "slider" / "test"
    write_wav(test / "normal_id_00_00000099.wav", hum(100, seconds=1.0), RATE)
    (test / "anomaly_id_00_00000099.wav").write_bytes(b"")
    with pytest.warns(UserWarning, match="Skipped 2 corrupt, empty or too short audio files"):
        split = load(tree, "test")
    assert len(split) == 8 and len(split.files) == 10


def test_missing_directory_names_layout_source_and_make_data(tmp_path):
    with pytest.raises(DatasetError, match="DCASE2020 task 2.*zenodo.*make data"):
        ad.load(tmp_path / "nowhere", "train")


def test_roc_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=200), 1)  # rounded, so there are ties
    positive = rng.uniform(size=200) < scores / 4 + 0.4
    assert ad.roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores))
    assert math.isnan(ad.roc_auc([1, 2, 3], [True, True, True]))


def test_anomaly_auc_scores_clips_by_the_negative_true_id_probability(tree):
    test = load(tree, "test", window_hop=8)  # 4 windows per clip
    rng = np.random.default_rng(1)
    probability_true = np.where(test.anomaly, 0.4, 0.9) + rng.uniform(-0.05, 0.05, len(test))
    scores = np.zeros((len(test), 2))
    scores[np.arange(len(test)), test.y] = probability_true
    scores[np.arange(len(test)), 1 - test.y] = 1 - probability_true
    assert ad.anomaly_auc(scores, test) == {"id_00": 1.0, "id_02": 1.0, "mean": 1.0}
    flipped = scores[:, ::-1]
    assert ad.anomaly_auc(flipped, test)["mean"] == 0.0
    # A clip's score is the mean over its windows: one confident window does not decide it.
    partial = scores.copy()
    first_anomaly_window = np.flatnonzero(test.anomaly & (test.y == 0))[0]
    partial[first_anomaly_window] = [0.99, 0.01]
    assert ad.anomaly_auc(partial, test)["id_00"] == 1.0


def test_anomaly_auc_input_errors(tree):
    test = load(tree, "test")
    with pytest.raises(ValueError, match=r"outputs of shape \(8, 2\).*shape \(8, 3\)"):
        ad.anomaly_auc(np.zeros((8, 3)), test)
    validation = load(tree, "validation", validation_share=0.5)
    with pytest.raises(ValueError, match="received the 'validation' split, which has none"):
        ad.anomaly_auc(np.full((len(validation), 2), 0.5), validation)


def test_training_dataset_plain_and_with_mixup(tree):
    train = load(tree, "train", validation_share=0.0)
    plain = list(ad.training_dataset(train, batch_size=8, seed=0).as_numpy_iterator())
    assert sum(len(y) for _, y in plain) == len(train) and plain[0][1].dtype == np.int32
    mixed = list(ad.training_dataset(train, 8, seed=0, mixup=0.3).as_numpy_iterator())
    x, y = mixed[0]
    assert y.shape == (8, 2) and np.allclose(y.sum(axis=1), 1.0)
    assert ((y > 0.01) & (y < 0.99)).any()
    with pytest.raises(ValueError, match="Invalid value for `mixup`: expected alpha >= 0"):
        ad.training_dataset(train, 8, seed=0, mixup=-1)


def test_evaluation_files_are_read_with_their_ground_truth(tree):
    test = tree / "slider" / "test"
    write_wav(test / "id_00_00000100.wav", hum(100, anomaly=True), RATE)
    write_wav(test / "id_02_00000101.wav", hum(400), RATE)
    with pytest.warns(UserWarning, match="Left out 2 evaluation files without an anomaly label"):
        assert len(load(tree, "test")) == 8
    (tree / "slider" / "eval_data_list.csv").write_text(
        "slider\nid_00_00000100.wav,1\nid_02_00000101.wav,0\n")
    labelled = load(tree, "test")
    assert len(labelled) == 10 and labelled.anomaly.sum() == 5
    assert any(f.endswith("id_00_00000100.wav") for f in labelled.files)


def test_max_per_class_caps_each_id(tree):
    assert len(load(tree, "train", validation_share=0, max_per_class=3)) == 6
    assert len(load(tree, "test", max_per_class=1)) == 4
