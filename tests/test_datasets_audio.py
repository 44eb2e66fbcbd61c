"""Tests of mnas.datasets.audio: reading good and bad audio files."""

import numpy as np
import pytest
import soundfile

from mnas.datasets import audio, cache


def test_write_then_read_round_trips(tmp_path):
    wave = np.sin(np.linspace(0, 100, 8000)).astype(np.float32) * 0.5
    audio.write_wav(tmp_path / "a" / "x.wav", wave, 16000)
    skips = cache.SkipLog()
    read = audio.read_audio(tmp_path / "a" / "x.wav", 16000, 0.1, skips)
    np.testing.assert_allclose(read, wave, atol=1 / 32767)
    assert skips.count == 0


def test_other_sample_rates_are_resampled_and_channels_averaged(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.5
    soundfile.write(str(tmp_path / "s.wav"), stereo, 44100)
    read = audio.read_audio(tmp_path / "s.wav", 16000, 0.1, cache.SkipLog())
    assert read.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(read))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)


def test_bad_files_are_skipped_and_counted_once(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF this is not audio")
    soundfile.write(str(tmp_path / "empty.wav"), np.zeros(0), 16000)
    audio.write_wav(tmp_path / "short.wav", np.ones(100) * 0.1, 16000)
    reasons = []

    class Recorder:
        def skip(self, path, reason):
            reasons.append(reason.split(" ")[0])

    for name in ("corrupt.wav", "empty.wav", "short.wav"):
        assert audio.read_audio(tmp_path / name, 16000, 0.1, Recorder()) is None
    assert reasons == ["unreadable", "empty", "0.006"]
    skips = cache.SkipLog()
    for name in ("corrupt.wav", "empty.wav", "short.wav"):
        audio.read_audio(tmp_path / name, 16000, 0.1, skips)
    assert skips.count == 3 and skips.first.startswith(f"{tmp_path / 'corrupt.wav'}: unreadable")


def test_fit_length_pads_and_cuts():
    np.testing.assert_array_equal(audio.fit_length(np.ones(3), 5), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(audio.fit_length(np.arange(5), 2), [0, 1])
