"""Tests of mnas.datasets.features: MFCC and log-mel values on known signals."""

import librosa
import numpy as np
import pytest
import scipy.fft
import scipy.signal

from mnas.datasets import features

RATE = 16000


def tone(frequency, seconds=1.0, amplitude=0.5):
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def reference_mfcc(wave):
    """MFCCs written out step by step with scipy and librosa: Hann frames zero-padded to 1024,
    power, mel, dB with the fixed -80 dB floor, DCT-II."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, 640)[::320]
    window = scipy.signal.get_window("hann", 640, fftbins=True)
    power = np.abs(np.fft.rfft(frames * window, n=1024, axis=1)) ** 2
    mel = power @ librosa.filters.mel(sr=RATE, n_fft=1024, n_mels=40, fmin=20, fmax=4000).T
    db = 10 * np.log10(np.maximum(mel, 1e-8))
    return scipy.fft.dct(db, type=2, norm="ortho", axis=1)[:, :10]


def test_mfcc_shape_is_49_by_10():
    assert features.MfccSettings().shape == (49, 10, 1)
    assert features.mfcc(tone(440)).shape == (49, 10, 1)
    assert features.mfcc(np.stack([tone(440), tone(880)])).shape == (2, 49, 10, 1)


def test_mfcc_of_a_tone_matches_the_formula():
    wave = tone(1000)
    np.testing.assert_allclose(features.mfcc(wave)[..., 0], reference_mfcc(wave), atol=2e-3)


def test_mfcc_of_a_steady_tone_is_constant_over_time():
    coefficients = features.mfcc(tone(700))[..., 0]
    assert np.abs(coefficients - coefficients.mean(axis=0)).max() < 0.05


def test_doubling_the_amplitude_only_raises_c0_by_6_db_times_sqrt_40():
    # Broadband noise keeps every mel band above the fixed floor.
    noise = np.random.default_rng(0).normal(0, 0.1, RATE).astype(np.float32)
    quiet, loud = features.mfcc(np.stack([noise, 2 * noise]))
    difference = (loud - quiet)[..., 0].mean(axis=0)
    assert difference[0] == pytest.approx(20 * np.log10(2) * np.sqrt(40), abs=0.05)
    np.testing.assert_allclose(difference[1:], 0, atol=0.05)


def test_mfcc_frames_do_not_depend_on_the_rest_of_the_clip():
    # A streaming device sees one frame at a time: a loud burst elsewhere in the clip must
    # not move a quiet frame's features (librosa's 80 dB below the clip's maximum did).
    quiet = tone(300, amplitude=0.001)
    burst = quiet.copy()
    burst[-2000:] = 0.9
    a, b = features.mfcc(np.stack([quiet, burst]))[..., 0]
    np.testing.assert_allclose(a[:40], b[:40], atol=1e-4)


def test_settings_change_the_cache_key():
    import dataclasses

    from mnas.datasets import cache

    keys = {cache.cache_key("kws", {"mfcc": dataclasses.asdict(s)}, []) for s in (
        features.MfccSettings(), features.MfccSettings(floor_db=-70.0),
        features.MfccSettings(n_fft=2048))}
    assert len(keys) == 3
    before = {"sample_rate": 16000, "clip_seconds": 1.0, "frame_ms": 40.0, "hop_ms": 20.0,
              "n_mels": 40, "n_mfcc": 10, "fmin": 20.0, "fmax": 4000.0}  # the clip-max floor
    assert cache.cache_key("kws", {"mfcc": before}, []) not in keys


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match=r"`n_fft`: expected a power of two .*received 1000"):
        features.mfcc(tone(440), features.MfccSettings(n_fft=1000))


def test_mfcc_rejects_clips_of_the_wrong_length():
    with pytest.raises(ValueError, match="expected clips of 16000 samples, received shape"):
        features.mfcc(np.zeros(8000))


def test_mfcc_of_silence_is_finite():
    assert np.all(np.isfinite(features.mfcc(np.zeros(RATE))))


def test_log_mel_windows_of_a_10_s_clip():
    windows = features.log_mel_windows(tone(1000, seconds=10))
    # 1 + (160000 - 1024) // 512 = 311 frames (no padding); 64-frame windows every 32 frames.
    assert windows.shape == (8, 32, 32, 1)
    settings = features.LogMelSettings()
    centres = librosa.mel_frequencies(n_mels=64, fmax=RATE / 2)
    expected_band = np.argmin(np.abs(centres - 1000)) // 2
    assert windows[..., 0].mean(axis=(0, 1)).argmax() == expected_band
    assert settings.min_seconds == pytest.approx((63 * 512 + 1024) / RATE)


def test_log_mel_frames_are_librosa_without_padding():
    wave = np.random.default_rng(0).normal(0, 0.1, 3 * RATE).astype(np.float32)
    settings = features.LogMelSettings()
    mel = librosa.feature.melspectrogram(y=wave, sr=RATE, n_fft=1024, hop_length=512, n_mels=64,
                                         power=2.0, center=False)
    expected = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T
    index = np.arange(len(expected))[:, None] * 512 + np.arange(1024)[None, :]
    np.testing.assert_allclose(features.log_mel_frames(wave[index], settings), expected,
                               atol=1e-4)


def test_log_mel_windows_are_log_power_in_db():
    quiet = features.log_mel_windows(tone(500, seconds=3, amplitude=0.1))
    loud = features.log_mel_windows(tone(500, seconds=3, amplitude=1.0))
    band = quiet[0, :, :, 0].mean(axis=0).argmax()
    assert (loud - quiet)[0, 8:24, band, 0].mean() == pytest.approx(20.0, abs=0.1)


def test_log_mel_windows_of_a_short_clip_are_empty():
    assert features.log_mel_windows(tone(500, seconds=1)).shape == (0, 32, 32, 1)


def test_log_mel_size_must_divide_the_window():
    with pytest.raises(ValueError, match=r"a divisor of `window_frames` \(64\), received 24"):
        features.log_mel_windows(tone(500, seconds=3), features.LogMelSettings(size=24))


def test_block_mean_averages_blocks():
    images = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    np.testing.assert_allclose(features.block_mean(images, 2)[0], [[2.5, 4.5], [10.5, 12.5]])


def test_load_image_resizes_and_scales(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "red.png")
    rgb = features.load_image(tmp_path / "red.png", 16, grayscale=False)
    gray = features.load_image(tmp_path / "red.png", 16, grayscale=True)
    assert rgb.shape == (16, 16, 3) and gray.shape == (16, 16, 1)
    np.testing.assert_allclose(rgb[0, 0], [1.0, 0.0, 0.0])
    # ITU-R 601 luma of pure red: 299/1000 of full scale.
    assert gray[0, 0, 0] == pytest.approx(76 / 255)


def test_batched_mfcc_equals_the_reference_clip_by_clip():
    waves = np.stack([tone(300, amplitude=0.01), tone(2000, amplitude=0.9), np.zeros(RATE)])
    batched = features.mfcc(waves, chunk=2)
    for wave, got in zip(waves, batched):
        np.testing.assert_allclose(got[..., 0], reference_mfcc(wave), atol=2e-3)
