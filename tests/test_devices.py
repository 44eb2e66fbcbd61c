import json

import pytest

from mnas import devices, errors


def test_builtin_profiles_and_aliases():
    small = devices.get_device("S")
    assert small.name == "STM32F446RE" and small.sram_bytes == 128 * 1024
    assert small.flash_budget_bytes == 512 * 1024 - devices.DEFAULT_FLASH_RESERVE
    assert devices.get_device("M").latency_model.factor == 1.0


REQUIRED_PARTS = ("nRF52840", "RP2040", "STM32H743ZI", "STM32L4R5ZI", "ESP32-S3",
                  "Alif-E7-M55-HP", "STM32F446RE", "STM32F746ZG", "STM32F767ZI")


@pytest.mark.parametrize("name", REQUIRED_PARTS)
def test_every_part_says_where_its_figures_come_from(name):
    device = devices.get_device(name)
    assert device.source and device.core
    kind = device.latency_source.split(":")[0]
    assert kind == ("measured" if name.startswith("STM32F") else "scaled")
    assert device.latency_model.clock_mhz > 0


def test_calibrate_fits_the_board(tmp_path):
    from conftest import REFERENCE
    from mnas.hardware import estimate

    kws = REFERENCE / "kws_ref_model.tflite"
    vww = REFERENCE / "vww_96_int8.tflite"
    base = devices.get_device("S")
    measured = {p: 1.3 * base.model_latency_ms(estimate.read_model_info(p)) for p in (kws, vww)}
    csv = tmp_path / "board.csv"
    csv.write_text("model,ms\n" + "".join(f"{p},{ms}\n" for p, ms in measured.items()))
    board = devices.calibrate(base, csv, name="my_board")
    assert board.name == "my_board" and board.latency_source.startswith("measured")
    assert board.model_latency_ms(kws) == pytest.approx(measured[kws], rel=1e-6)
    path = tmp_path / "my_board.json"
    path.write_text(json.dumps(board.to_json()))
    assert devices.get_device(str(path)).model_latency_ms(vww) == pytest.approx(measured[vww])


def test_custom_profile_from_json(tmp_path):
    path = tmp_path / "board.json"
    path.write_text(json.dumps({"name": "board", "sram_bytes": 65536, "flash_bytes": 262144,
                                "mops_per_second": {"default": 20}}))
    device = devices.get_device(str(path))
    assert device.sram_budget_bytes == 65536 - devices.DEFAULT_SRAM_RESERVE
    assert device.latency_ms(2e6) == pytest.approx(100)


@pytest.mark.parametrize("profile, message", [
    ({"sram_bytes": 1, "flash_bytes": 1, "mops_per_second": {"a": 1}},
     r"missing field `name`"),
    ({"name": "b", "sram_bytes": "lots", "flash_bytes": 1, "mops_per_second": {"a": 1}},
     r"Invalid value for `sram_bytes` in .*: expected a whole number of bytes, "
     r"received 'lots'"),
    ({"name": "b", "sram_bytes": 10, "flash_bytes": 10, "sram_reserve_bytes": 20,
      "mops_per_second": {"a": 1}}, r"`sram_reserve_bytes` .*less than `sram_bytes` \(10\)"),
    ({"name": "b", "sram_bytes": 10, "flash_bytes": 10, "mops_per_second": {"a": -1}},
     r"`mops_per_second.a` .*positive number of MOps per second, received -1"),
    ({"name": "b", "sram_bytes": 10, "flash_bytes": 10, "mops_per_second": {}, "x": 1},
     r"unknown field `x`"),
    ({"name": "b", "sram_bytes": 10, "flash_bytes": 10},
     r"expected a `latency` model or `mops_per_second`"),
    ({"name": "b", "sram_bytes": 10, "flash_bytes": 10, "latency": {"clock_mhz": 1}},
     r"Invalid value for `latency` in .*expected `cycles_per_unit` and `clock_mhz`"),
])
def test_bad_profiles_name_the_field(tmp_path, profile, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(profile))
    with pytest.raises(errors.DeviceProfileError, match=message):
        devices.load_device(path)


def test_unreadable_profiles(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("not json")
    with pytest.raises(errors.DeviceProfileError, match=r"not JSON"):
        devices.load_device(path)
    with pytest.raises(errors.UnknownNameError, match=r"received 'nRF52'"):
        devices.get_device("nRF52")
