"""The C feature front end: built with the system compiler, it matches the Python features."""

import shutil

import numpy as np
import pytest

from mnas.datasets import features
from mnas.deploy import features_c

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
RATE = 16000


def clips():
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    chirp = np.sin(2 * np.pi * (200 + 1800 * t) * t) * np.hanning(RATE)
    speech_like = rng.normal(0, 0.05, RATE) * (np.sin(2 * np.pi * 3 * t) > 0)
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.9 * chirp, speech_like,
                     rng.normal(0, 1e-4, RATE), np.zeros(RATE), np.clip(
                         rng.normal(0, 0.5, RATE), -1, 1)]).astype(np.float32)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    features_c.write_features_c(features.MfccSettings(), out)
    return features_c.build_host(str(out)), out


def test_c_features_match_python(host):
    exe, _ = host
    settings = features.MfccSettings()
    waves = clips()
    got = features_c.run_host(exe, waves, settings)
    expected = features.mfcc(waves, settings)
    assert got.shape == expected.shape == (len(waves), 49, 10, 1)
    # float32 arithmetic in C against float64 in numpy, on values up to ~500.
    assert np.abs(got - expected).max() < 0.01


def test_tables_are_the_python_ones(host):
    _, out = host
    settings = features.MfccSettings()
    source = (out / "features.c").read_text()
    starts, lengths, weights = features_c.sparse_mel(settings)
    dense = np.zeros((settings.n_mels, settings.n_fft // 2 + 1))
    offset = 0
    for band, (start, length) in enumerate(zip(starts, lengths)):
        dense[band, start:start + length] = weights[offset:offset + length]
        offset += length
    np.testing.assert_allclose(dense, features.mel_filterbank(settings))
    assert f"static const float kMelWeights[{len(weights)}]" in source
    header = (out / "features.h").read_text()
    assert "#define MNAS_FEATURES_FLOOR_DB (-80.0f)" in header
    assert "#define MNAS_FEATURES_N_FFT 1024" in header


def test_power_spectrum_matches_cmsis_dsp():
    cmsisdsp = pytest.importorskip("cmsisdsp")
    settings = features.MfccSettings()
    frame = clips()[2, :settings.frame_samples] * features.window(settings)
    padded = np.zeros(settings.n_fft, np.float32)
    padded[:settings.frame_samples] = frame
    instance = cmsisdsp.arm_rfft_fast_instance_f32()
    cmsisdsp.arm_rfft_fast_init_f32(instance, settings.n_fft)
    packed = cmsisdsp.arm_rfft_fast_f32(instance, padded, 0)
    power = np.concatenate([[packed[0] ** 2], cmsisdsp.arm_cmplx_mag_squared_f32(packed[2:]),
                            [packed[1] ** 2]])
    expected = np.abs(np.fft.rfft(frame, n=settings.n_fft)) ** 2
    np.testing.assert_allclose(power, expected, rtol=1e-3, atol=1e-6 * expected.max())


def test_other_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"Invalid value for `settings`: expected an "
                                         r"`MfccSettings` or a `LogMelSettings`.*received int"):
        features_c.write_features_c(3, tmp_path)


def test_c_log_mel_windows_match_python(tmp_path):
    settings = features.LogMelSettings()
    features_c.write_features_c(settings, tmp_path)
    exe = features_c.build_host(str(tmp_path))
    rng = np.random.default_rng(1)
    t = np.arange(4 * RATE) / RATE
    wave = (0.3 * np.sin(2 * np.pi * 1000 * t) + rng.normal(0, 0.05, len(t))).astype(np.float32)
    expected = features.log_mel_windows(wave, settings)  # 2 windows, 32 frames apart.
    hop = settings.window_hop * settings.hop_samples
    starts = [i * hop for i in range(len(expected))]
    got = features_c.run_host(exe, np.stack([wave[s:s + features_c.input_samples(settings)]
                                             for s in starts]), settings)
    assert got.shape == expected.shape == (2, 32, 32, 1)
    assert np.abs(got - expected).max() < 0.01
    header = (tmp_path / "features.h").read_text()
    assert "#define MNAS_FEATURES_WINDOW_FRAMES 64" in header
    assert "#define MNAS_FEATURES_FLOOR_DB (-100.0f)" in header
