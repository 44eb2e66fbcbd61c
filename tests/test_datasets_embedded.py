"""Tests of mnas.datasets.embedded: a tiny generation run and the safety rules."""

import json

import numpy as np
import pytest

from mnas import datasets
from mnas.datasets import embedded
from mnas.errors import DatasetError


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    datasets.generate_embedded(root, seed=3, scale=0.02, workers=1, verbose=False)
    return root


def test_writes_the_real_layouts_with_manifests(generated):
    kws_root = generated / "kws"
    assert (kws_root / "_background_noise_").is_dir()
    assert len(list((kws_root / "_background_noise_").glob("*.wav"))) == 7
    assert {p.name for p in kws_root.iterdir() if p.is_dir()} >= set(embedded.KEYWORDS)
    names = list((generated / "ad" / embedded.MACHINE / "test").glob("anomaly_id_0*_*.wav"))
    assert names
    assert list((generated / "vww" / "person").glob("synthetic_person_*.jpg"))
    for task in datasets.TASKS:
        manifest = json.loads((generated / task / "MANIFEST.json").read_text())
        assert manifest["synthetic"] is True and manifest["seed"] == 3
    assert not list(generated.glob(".*partial*"))


def test_held_out_speakers_are_never_heard_in_training(generated):
    root = generated / "kws"
    held_out = (root / "validation_list.txt").read_text().split() + (
        root / "testing_list.txt").read_text().split()
    assert held_out
    speaker = lambda path: path.split("/")[1].split("_nohash_")[0]  # noqa: E731
    held_speakers = {speaker(p) for p in held_out}
    train = datasets.load_split("kws", root, "train")
    train_speakers = {speaker(f) for f in train.files if "_nohash_" in f}
    assert train_speakers and not train_speakers & held_speakers


def test_readers_serve_the_generated_data(generated):
    kws_test = datasets.load_split("kws", generated / "kws", "test")
    assert kws_test.x.shape[1:] == (49, 10, 1) and set(kws_test.y) <= set(range(12))
    ad_test = datasets.load_split("ad", generated / "ad", "test")
    assert ad_test.labels == embedded.MACHINE_IDS and ad_test.anomaly.any()
    vww_train = datasets.load_split("vww", generated / "vww", "train", image_size=50,
                                    grayscale=True)
    assert vww_train.x.shape[1:] == (50, 50, 1) and set(vww_train.y) == {0, 1}


def test_same_seed_same_data(generated, tmp_path):
    datasets.generate_embedded(tmp_path, seed=3, tasks=["ad", "vww"], scale=0.02, verbose=False)
    for relative in (f"ad/{embedded.MACHINE}/test/anomaly_id_01_00000000.wav",
                     "vww/person/synthetic_person_00001.jpg"):
        assert (tmp_path / relative).read_bytes() == (generated / relative).read_bytes()
    datasets.generate_embedded(tmp_path / "other", seed=4, tasks=["ad"], scale=0.02,
                               verbose=False)
    relative = f"ad/{embedded.MACHINE}/train/normal_id_00_00000000.wav"
    assert (tmp_path / "other" / relative).read_bytes() != (generated / relative).read_bytes()


def test_kws_speech_is_deterministic(generated, tmp_path):
    datasets.generate_embedded(tmp_path, seed=3, tasks=["kws"], scale=0.02, workers=1,
                               verbose=False)
    listed = (generated / "kws" / "testing_list.txt").read_text()
    assert (tmp_path / "kws" / "testing_list.txt").read_text() == listed
    for relative in listed.split()[:5]:
        assert (tmp_path / "kws" / relative).read_bytes() == (
            generated / "kws" / relative).read_bytes()


def test_complete_tasks_are_kept_and_foreign_folders_refused(generated, capsys):
    before = (generated / "ad" / "MANIFEST.json").stat().st_mtime_ns
    datasets.generate_embedded(generated, seed=5, tasks=["ad"], scale=0.02)
    assert (generated / "ad" / "MANIFEST.json").stat().st_mtime_ns == before
    assert "generated with seed 3, not 5" in capsys.readouterr().out
    foreign = generated.parent / "foreign"
    (foreign / "kws").mkdir(parents=True)
    (foreign / "kws" / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="Refusing to write the embedded kws dataset"):
        datasets.generate_embedded(foreign, tasks=["kws"], scale=0.02, verbose=False)
    assert (foreign / "kws" / "mine.txt").read_text() == "keep me"


def test_an_interrupted_task_leaves_no_folder(tmp_path, monkeypatch):
    def failing(out, seed, say, scale):
        (out / "half.wav").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setitem(embedded._WRITERS, "ad", failing)
    with pytest.raises(KeyboardInterrupt):
        datasets.generate_embedded(tmp_path, tasks=["ad"], verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="Invalid value for `tasks`.*received \\['kws', 'asr'\\]"):
        datasets.generate_embedded(tmp_path, tasks=["kws", "asr"])
    with pytest.raises(ValueError, match="Invalid value for `scale`"):
        datasets.generate_embedded(tmp_path, scale=0)
    with pytest.raises(ValueError, match="Invalid value for `workers`.*received 0"):
        datasets.generate_embedded(tmp_path, workers=0)


def test_machine_anomalies_change_the_sound():
    profile = embedded._machine_profile(0, 1)
    normal = embedded.machine_sound(profile, 2.0, np.random.default_rng(0))
    abnormal = embedded.machine_sound(profile, 2.0, np.random.default_rng(0), anomaly=True)
    assert normal.shape == abnormal.shape == (32000,) and np.abs(normal).max() <= 0.5
    assert not np.allclose(normal, abnormal)


def test_colored_noise_has_the_asked_slope():
    rng = np.random.default_rng(0)
    for exponent in (0.0, 1.0, 2.0):
        power = np.abs(np.fft.rfft(embedded.colored_noise(2**16, exponent, rng))) ** 2
        frequencies = np.fft.rfftfreq(2**16)
        band = (frequencies > 0.001) & (frequencies < 0.4)
        slope = np.polyfit(np.log(frequencies[band]), np.log(power[band]), 1)[0]
        assert slope == pytest.approx(-exponent, abs=0.1)
