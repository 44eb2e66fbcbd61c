"""Reading and writing audio files, tolerant of the bad files real datasets hold."""

from pathlib import Path

import numpy as np
import soundfile


def read_audio(path, sample_rate, min_seconds, skips):
    """Reads a mono float32 waveform at `sample_rate`, or None for a file that cannot be used.

    Multi-channel files are averaged to mono; other sample rates are resampled. Unreadable,
    empty and too short files are recorded in `skips` and give None.

    Args:
        path: the audio file (any format libsndfile reads: wav, flac, ogg).
        sample_rate: the sample rate to return, in Hz.
        min_seconds: files shorter than this are skipped.
        skips: records skipped files: `skips.skip(path, reason)` (a `cache.SkipLog`).

    Returns:
        A float32 numpy array in [-1, 1], or None.
    """
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError, ValueError) as error:
        skips.skip(path, f"unreadable ({error})".replace("\n", " "))
        return None
    wave = data.mean(axis=1)
    if rate != sample_rate and wave.size:
        import librosa

        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate).astype(np.float32)
    if wave.size == 0:
        skips.skip(path, "empty")
        return None
    if wave.size < min_seconds * sample_rate:
        skips.skip(path, f"{wave.size / sample_rate:.3f} s long, shorter than {min_seconds} s")
        return None
    if not np.all(np.isfinite(wave)):
        skips.skip(path, "holds non-finite samples")
        return None
    return wave


def write_wav(path, wave, sample_rate):
    """Writes a float waveform in [-1, 1] as a 16-bit PCM wav file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)
    soundfile.write(str(path), pcm, sample_rate, subtype="PCM_16")


def fit_length(wave, length):
    """Pads a waveform with zeros at its end, or cuts its end, to `length` samples."""
    if wave.size >= length:
        return wave[:length]
    return np.pad(wave, (0, length - wave.size))
