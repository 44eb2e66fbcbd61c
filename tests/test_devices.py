import json

import pytest

from mnas import devices, errors


def test_builtin_profiles_and_aliases():
    small = devices.get_device("S")
    assert small.name == "STM32F446RE" and small.sram_bytes == 128 * 1024
    assert small.flash_budget_bytes == 512 * 1024 - devices.DEFAULT_FLASH_RESERVE
    assert devices.get_device("STM32F767ZI").latency_ms(190e6, "ds_cnn") == pytest.approx(1000)
    assert devices.get_device("M").throughput("no_such_backbone") == 150.0


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
