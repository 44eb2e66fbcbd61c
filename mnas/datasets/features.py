"""Feature extraction with librosa: MFCCs for keyword spotting, log-mel windows for anomaly
detection, and images scaled for visual wake words."""

import dataclasses

import numpy as np


class _Framing:
    """Frame and hop lengths in samples, for settings with `sample_rate`, `frame_ms`, `hop_ms`."""

    @property
    def frame_samples(self):
        return int(round(self.sample_rate * self.frame_ms / 1000))

    @property
    def hop_samples(self):
        return int(round(self.sample_rate * self.hop_ms / 1000))


@dataclasses.dataclass(frozen=True)
class MfccSettings(_Framing):
    """MFCC settings; the defaults are the MLPerf Tiny / MicroNets keyword-spotting features.

    40 ms frames every 20 ms over a 1 s clip at 16 kHz (no padding at the ends) give 49 frames
    of 10 coefficients from 40 mel bands between 20 Hz and 4 kHz.
    """

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    frame_ms: float = 40.0
    hop_ms: float = 20.0
    n_mels: int = 40
    n_mfcc: int = 10
    fmin: float = 20.0
    fmax: float = 4000.0

    @property
    def clip_samples(self):
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def shape(self):
        frames = 1 + (self.clip_samples - self.frame_samples) // self.hop_samples
        return (frames, self.n_mfcc, 1)


def mfcc(waves, settings=MfccSettings(), chunk=512):
    """MFCCs of clips of `settings.clip_samples` samples.

    Args:
        waves: float array, one clip (samples,) or a batch (n, samples).
        settings: an `MfccSettings`. Defaults to the 49x10 MLPerf Tiny features.
        chunk: clips per librosa call, which bounds the memory in use.

    Returns:
        float32 array (frames, n_mfcc, 1), or (n, frames, n_mfcc, 1) for a batch: time down,
        coefficients across: the DCT-II (orthonormal) of mel power in dB floored 80 dB below
        the clip's maximum, as `librosa.feature.mfcc` computes them for one clip.

    Example:
        >>> t = np.arange(16000) / 16000
        >>> mfcc(np.sin(2 * np.pi * 440 * t)).shape
        (49, 10, 1)
    """
    import librosa
    import scipy.fft

    waves = np.asarray(waves, dtype=np.float32)
    single = waves.ndim == 1
    batch = waves[None] if single else waves
    if batch.shape[-1] != settings.clip_samples:
        raise ValueError(
            f"Invalid value for `waves`: expected clips of {settings.clip_samples} samples, "
            f"received shape {waves.shape}."
        )
    parts = []
    for start in range(0, len(batch), chunk):
        mel = librosa.feature.melspectrogram(
            y=batch[start : start + chunk],
            sr=settings.sample_rate,
            n_fft=settings.frame_samples,
            hop_length=settings.hop_samples,
            n_mels=settings.n_mels,
            fmin=settings.fmin,
            fmax=settings.fmax,
            center=False,
        )
        # librosa.feature.mfcc floors the dB at 80 below the maximum of the whole array it is
        # given; the floor is taken per clip here so a clip's features do not depend on its
        # batch.
        db = 10 * np.log10(np.maximum(mel, 1e-10))
        db = np.maximum(db, db.max(axis=(-2, -1), keepdims=True) - 80.0)
        coefficients = scipy.fft.dct(db, type=2, norm="ortho", axis=-2)[..., : settings.n_mfcc, :]
        parts.append(np.swapaxes(coefficients, -1, -2)[..., None])
    out = np.concatenate(parts) if parts else np.zeros((0,) + settings.shape, np.float32)
    return out[0].astype(np.float32) if single else out.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class LogMelSettings(_Framing):
    """Log-mel settings of the DCASE2020 task 2 baseline as MicroNets uses them.

    64 ms frames every 32 ms, 64 mel bands; 64-frame windows (every `window_hop` frames)
    resized to `size` x `size` by averaging blocks.
    """

    sample_rate: int = 16000
    frame_ms: float = 64.0
    hop_ms: float = 32.0
    n_mels: int = 64
    window_frames: int = 64
    window_hop: int = 32
    size: int = 32

    @property
    def min_seconds(self):
        """The shortest clip that gives one window."""
        return (self.window_frames - 1) * self.hop_samples / self.sample_rate

    def validate(self):
        for name in ("window_frames", "n_mels"):
            value = getattr(self, name)
            if value % self.size:
                raise ValueError(
                    f"Invalid value for `size`: expected a divisor of `{name}` ({value}), "
                    f"received {self.size}."
                )


def log_mel_windows(wave, settings=LogMelSettings()):
    """Log-mel windows of one clip, as the anomaly-detection models see them.

    Args:
        wave: float waveform at `settings.sample_rate`.
        settings: a `LogMelSettings`. Defaults to the MicroNets AD features.

    Returns:
        float32 array (windows, size, size, 1) of log-mel power in dB (time down, mel across);
        no windows for a clip shorter than `settings.min_seconds`.
    """
    import librosa

    settings.validate()
    mel = librosa.feature.melspectrogram(
        y=np.asarray(wave, np.float32),
        sr=settings.sample_rate,
        n_fft=settings.frame_samples,
        hop_length=settings.hop_samples,
        n_mels=settings.n_mels,
        power=2.0,
    )
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T
    starts = range(0, log_mel.shape[0] - settings.window_frames + 1, settings.window_hop)
    windows = [log_mel[s : s + settings.window_frames] for s in starts]
    if not windows:
        return np.zeros((0, settings.size, settings.size, 1), np.float32)
    return block_mean(np.stack(windows), settings.size)[..., None].astype(np.float32)


def block_mean(images, size):
    """Resizes (n, h, w) arrays to (n, size, size) by averaging blocks (h, w multiples of size)."""
    n, h, w = images.shape
    return images.reshape(n, size, h // size, size, w // size).mean(axis=(2, 4))


def load_image(path, size, grayscale):
    """Reads an image as float32 (size, size, 1 or 3) in [0, 1], resized bilinearly.

    Raises:
        OSError: the file is not an image PIL can read.
    """
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("L" if grayscale else "RGB")
        image = image.resize((size, size), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels[..., None] if grayscale else pixels
