"""Tests of mnas.runconfig: the job's settings, checked and resolved."""

import os

import pytest

from mnas import errors, runconfig


def config(**changes):
    values = {"task": "ad", "data_dir": "data/embedded/ad", "out_dir": "runs/ad"}
    values.update(changes)
    return runconfig.Config(**values)


@pytest.mark.parametrize("name, value, expected", [
    ("sram_bytes", 99999999999999999999999, "at most 67,108,864 bytes (64 MiB)"),
    ("flash_bytes", 0, "a finite number above 0"),
    ("latency_ms", float("inf"), "a finite number above 0 and at most 3,600,000 ms"),
    ("latency_ms", float("nan"), "a finite number above 0"),
    ("temperature_start", float("inf"), "a finite number > 0"),
    ("learning_rate", -1.0, "a finite number > 0"),
    ("mixup", float("inf"), "a finite number >= 0"),
    ("batch_size", 0, "a whole number >= 1"),
])
def test_bad_values_are_refused_in_one_line(name, value, expected):
    with pytest.raises(errors.MnasError) as raised:
        runconfig.check(config(**{name: value}))
    text = str(raised.value)
    assert text.startswith(f"Invalid value for `{name}`: expected ") and expected in text
    assert f"received {value!r}" in text and "\n" not in text


def test_a_budget_below_the_runtime_reserve_says_so():
    with pytest.raises(errors.MnasError, match=r"Invalid value for `sram_bytes`: expected more "
                       r"than the 8,192 bytes the runtime \(TFLite Micro and the application\) "
                       r"reserves on STM32F446RE, leaving room for the model, received 1,000\."):
        runconfig.check(config(sram_bytes=1000))
    assert runconfig.target_device(config(sram_bytes=100_000)).sram_budget_bytes == 100_000 - 8192


def test_rules_across_settings():
    with pytest.raises(errors.MnasError, match="`warmup_epochs`: expected fewer than"):
        runconfig.check(config(warmup_epochs=10, search_epochs=10))
    runconfig.check(config(warmup_epochs=10, search_epochs=10, arch="micronet_ad_s"))
    with pytest.raises(errors.MnasError, match="`qat_epochs`: expected at least 1"):
        runconfig.check(config(qat_epochs=0))
    with pytest.raises(errors.UnknownNameError, match="`arch`"):
        runconfig.check(config(arch="nonet"))
    with pytest.raises(errors.MnasError, match="`stem_stride`: expected 1, or 2 for the kws"):
        runconfig.check(config(stem_stride=2))
    runconfig.check(config(task="kws", data_dir="data/embedded/kws", stem_stride=2))


def test_an_unwritable_output_directory_is_refused_without_writing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(errors.MnasError, match="`out_dir`: expected a writable directory"):
        runconfig.check(config(out_dir=str(blocker / "run")))
    runconfig.check(config(out_dir=str(tmp_path / "a" / "b")))
    assert os.listdir(tmp_path) == ["file"]


def test_equivalent_spellings_resolve_to_the_same_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    a = config(device="S", data_dir="data", out_dir="runs/a/", verbose=0)
    b = config(device="STM32F446RE", data_dir=str(tmp_path / "data") + "/",
               out_dir=str(tmp_path / "moved"))
    assert runconfig.resolved(a) == runconfig.resolved(b)
    assert "out_dir" not in runconfig.resolved(a)
    assert runconfig.resolved(config(device="M")) != runconfig.resolved(a)
    assert runconfig.resolved(config(seed=1)) != runconfig.resolved(config())
