"""Feature extraction: MFCCs for keyword spotting, log-mel windows for anomaly detection, and
images scaled for visual wake words.

Both audio front ends are computed frame by frame with a fixed dB floor, as a microcontroller
that streams audio computes them (no padding at the clip's ends, nothing that depends on the
rest of the clip): the keyword-spotting MFCCs and the anomaly-detection log-mel windows.
`mnas.deploy.features_c` emits the same computations in C.
"""

import dataclasses

import numpy as np

# How far below the MFCC floor the cached mel spectra in dB keep their values.
MEL_DB_MARGIN = 40.0

class _Framing:
    """Frame and hop lengths in samples, for settings with `sample_rate`, `frame_ms`, `hop_ms`."""

    @property
    def frame_samples(self):
        return int(round(self.sample_rate * self.frame_ms / 1000))

    @property
    def hop_samples(self):
        return int(round(self.sample_rate * self.hop_ms / 1000))

    def frame_index(self, frames):
        """(frames, frame_samples) indices of `frames` consecutive frames of a signal."""
        return (np.arange(frames) * self.hop_samples)[:, None] + np.arange(
            self.frame_samples)[None, :]

    def _validate_fft(self):
        if self.n_fft < self.frame_samples or self.n_fft & (self.n_fft - 1):
            raise ValueError(
                f"Invalid value for `n_fft`: expected a power of two of at least the frame's "
                f"{self.frame_samples} samples, received {self.n_fft}.")


@dataclasses.dataclass(frozen=True)
class MfccSettings(_Framing):
    """MFCC settings; the defaults are the MLPerf Tiny / MicroNets keyword-spotting features.

    40 ms frames every 20 ms over a 1 s clip at 16 kHz (no padding at the ends) give 49 frames
    of 10 coefficients from 40 mel bands between 20 Hz and 4 kHz. Each frame is computed on
    its own, as a device that streams audio computes it: a periodic Hann window of the frame's
    length, zero-padded to `n_fft` (a power of two, so CMSIS-DSP's real FFT can take it), the
    power spectrum, a Slaney mel filterbank, dB of mel power with a fixed floor `floor_db`
    (no dependence on the rest of the clip), and the orthonormal DCT-II.
    """

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    frame_ms: float = 40.0
    hop_ms: float = 20.0
    n_mels: int = 40
    n_mfcc: int = 10
    fmin: float = 20.0
    fmax: float = 4000.0
    n_fft: int = 1024
    floor_db: float = -80.0

    @property
    def clip_samples(self):
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def shape(self):
        frames = 1 + (self.clip_samples - self.frame_samples) // self.hop_samples
        return (frames, self.n_mfcc, 1)

    def validate(self):
        self._validate_fft()
        if not 0 < self.n_mfcc <= self.n_mels:
            raise ValueError(
                f"Invalid value for `n_mfcc`: expected 1 to `n_mels` ({self.n_mels}), received "
                f"{self.n_mfcc}.")

    def describe(self):
        """The settings firmware needs, as a flat dict (written into `model_data.h`)."""
        return {"kind": "mfcc", "sample_rate": self.sample_rate,
                "frame_samples": self.frame_samples, "hop_samples": self.hop_samples,
                "frames": self.shape[0], "n_fft": self.n_fft, "n_mels": self.n_mels,
                "n_mfcc": self.n_mfcc, "fmin": float(self.fmin), "fmax": float(self.fmax),
                "floor_db": float(self.floor_db), "window": "hann",
                "mel": "slaney", "dct": "orthonormal DCT-II"}


def window(settings):
    """The periodic Hann window of a frame (`scipy.signal.get_window("hann", n)`)."""
    n = np.arange(settings.frame_samples)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / settings.frame_samples)


def mel_filterbank(settings):
    """(n_mels, n_fft // 2 + 1) Slaney mel weights, as librosa makes them."""
    import librosa

    return librosa.filters.mel(sr=settings.sample_rate, n_fft=settings.n_fft,
                               n_mels=settings.n_mels, fmin=settings.fmin, fmax=settings.fmax,
                               dtype=np.float64)


def dct_matrix(settings):
    """(n_mfcc, n_mels) rows of the orthonormal DCT-II (`scipy.fft.dct(norm="ortho")`)."""
    k = np.arange(settings.n_mfcc)[:, None]
    n = np.arange(settings.n_mels)[None, :]
    out = np.cos(np.pi * k * (2 * n + 1) / (2 * settings.n_mels)) * np.sqrt(2.0 / settings.n_mels)
    out[0] /= np.sqrt(2.0)
    return out


def mel_power_frames(frames, settings=MfccSettings()):
    """Mel power of frames of `settings.frame_samples` samples, each on its own.

    Args:
        frames: float array (..., frame_samples).
        settings: an `MfccSettings`.

    Returns:
        float64 array (..., n_mels): the Slaney mel filterbank over the power spectrum of each
        Hann-windowed frame, zero-padded to `n_fft`.
    """
    settings.validate()
    spectrum = np.fft.rfft(np.asarray(frames, np.float64) * window(settings), n=settings.n_fft)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return power @ mel_filterbank(settings).T


def mfcc_of_mel_db(db, settings=MfccSettings()):
    """MFCCs of mel power in dB: the fixed floor `settings.floor_db`, then the DCT-II.

    `db` may hold values below the floor (the cached mel spectra keep them, so that noise can
    be mixed in before the floor is taken).

    Args:
        db: float array (..., n_mels) of `10 log10(mel power)`.
        settings: an `MfccSettings`.

    Returns:
        float64 array (..., n_mfcc).
    """
    return np.maximum(np.asarray(db, np.float64), settings.floor_db) @ dct_matrix(settings).T


def mfcc_frames(frames, settings=MfccSettings()):
    """MFCCs of frames of `settings.frame_samples` samples, each on its own.

    Args:
        frames: float array (..., frame_samples).
        settings: an `MfccSettings`.

    Returns:
        float64 array (..., n_mfcc).
    """
    return mfcc_of_mel_db(_mel_db(frames, settings), settings)


def power_db(power, settings=MfccSettings()):
    """`10 log10(power)`, floored `MEL_DB_MARGIN` dB below `settings.floor_db` (so the floor
    of `mfcc_of_mel_db` still decides, even after noise is added as power)."""
    amin = 10.0 ** ((settings.floor_db - MEL_DB_MARGIN) / 10.0)
    return 10.0 * np.log10(np.maximum(power, amin))


def mel_db(waves, settings=MfccSettings(), chunk=256):
    """Mel power in dB of every frame of signals (no padding at the ends).

    Args:
        waves: float array (n, samples), at least `settings.frame_samples` samples.
        settings: an `MfccSettings`.
        chunk: signals per step, which bounds the memory in use. Defaults to 256.

    Returns:
        float32 array (n, frames, n_mels) (`power_db` of `mel_power_frames`).
    """
    waves = np.asarray(waves, dtype=np.float32)
    frames = 1 + (waves.shape[-1] - settings.frame_samples) // settings.hop_samples
    if frames < 1:
        raise ValueError(
            f"Invalid value for `waves`: expected signals of at least {settings.frame_samples} "
            f"samples, received shape {waves.shape}.")
    index = settings.frame_index(frames)
    return np.concatenate(
        [_mel_db(waves[i:i + chunk][:, index], settings).astype(np.float32)
         for i in range(0, len(waves), chunk)]
        or [np.zeros((0, frames, settings.n_mels), np.float32)])


def _mel_db(framed, settings):
    return power_db(mel_power_frames(framed, settings), settings)


def mfcc(waves, settings=MfccSettings(), chunk=256):
    """MFCCs of clips of `settings.clip_samples` samples.

    Args:
        waves: float array, one clip (samples,) or a batch (n, samples).
        settings: an `MfccSettings`. Defaults to the 49x10 MLPerf Tiny features.
        chunk: clips per step, which bounds the memory in use.

    Returns:
        float32 array (frames, n_mfcc, 1), or (n, frames, n_mfcc, 1) for a batch: time down,
        coefficients across (`mfcc_frames` of each frame).

    Example:
        >>> t = np.arange(16000) / 16000
        >>> mfcc(np.sin(2 * np.pi * 440 * t)).shape
        (49, 10, 1)
    """
    waves = np.asarray(waves, dtype=np.float32)
    single = waves.ndim == 1
    batch = waves[None] if single else waves
    if batch.shape[-1] != settings.clip_samples:
        raise ValueError(
            f"Invalid value for `waves`: expected clips of {settings.clip_samples} samples, "
            f"received shape {waves.shape}."
        )
    index = settings.frame_index(settings.shape[0])
    parts = [mfcc_of_mel_db(_mel_db(batch[i:i + chunk][:, index], settings), settings)[..., None]
             for i in range(0, len(batch), chunk)]
    out = np.concatenate(parts) if parts else np.zeros((0,) + settings.shape)
    return out[0].astype(np.float32) if single else out.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class LogMelSettings(_Framing):
    """Log-mel settings of the DCASE2020 task 2 baseline as MicroNets uses them.

    64 ms frames every 32 ms (no padding at the ends), each on its own: a periodic Hann window,
    the power spectrum, a Slaney mel filterbank of 64 bands over 0-8 kHz, dB with a fixed floor
    (`floor_db`); 64-frame windows (every `window_hop` frames) resized to `size` x `size` by
    averaging blocks.
    """

    sample_rate: int = 16000
    frame_ms: float = 64.0
    hop_ms: float = 32.0
    n_mels: int = 64
    window_frames: int = 64
    window_hop: int = 32
    size: int = 32
    n_fft: int = 1024
    fmin: float = 0.0
    fmax: float = 8000.0
    floor_db: float = -100.0

    @property
    def window_samples(self):
        """The samples of one window, the model's input."""
        return (self.window_frames - 1) * self.hop_samples + self.frame_samples

    @property
    def min_seconds(self):
        """The shortest clip that gives one window."""
        return self.window_samples / self.sample_rate

    @property
    def shape(self):
        """The model's input shape."""
        return (self.size, self.size, 1)

    def describe(self):
        """The settings firmware needs, as a flat dict (written into `model_data.h`)."""
        return {"kind": "log_mel", "sample_rate": self.sample_rate,
                "frame_samples": self.frame_samples, "hop_samples": self.hop_samples,
                "n_fft": self.n_fft, "n_mels": self.n_mels, "fmin": float(self.fmin),
                "fmax": float(self.fmax), "window_frames": self.window_frames,
                "window_hop": self.window_hop, "size": self.size,
                "floor_db": float(self.floor_db), "window": "hann", "mel": "slaney"}

    def validate(self):
        self._validate_fft()
        for name in ("window_frames", "n_mels"):
            value = getattr(self, name)
            if value % self.size:
                raise ValueError(
                    f"Invalid value for `size`: expected a divisor of `{name}` ({value}), "
                    f"received {self.size}."
                )


def log_mel_frames(frames, settings=LogMelSettings()):
    """Log-mel power in dB of frames of `settings.frame_samples` samples, each on its own, with
    the fixed floor `settings.floor_db`: float64 array (..., n_mels)."""
    power = mel_power_frames(frames, settings)
    return 10.0 * np.log10(np.maximum(power, 10.0 ** (settings.floor_db / 10.0)))


def log_mel_windows(wave, settings=LogMelSettings()):
    """Log-mel windows of one clip, as the anomaly-detection models see them.

    Args:
        wave: float waveform at `settings.sample_rate`.
        settings: a `LogMelSettings`. Defaults to the MicroNets AD features.

    Returns:
        float32 array (windows, size, size, 1) of log-mel power in dB (time down, mel across);
        no windows for a clip shorter than `settings.min_seconds`.
    """
    settings.validate()
    wave = np.asarray(wave, np.float32)
    frames = 1 + (len(wave) - settings.frame_samples) // settings.hop_samples
    if len(wave) < settings.window_samples:
        return np.zeros((0,) + settings.shape, np.float32)
    log_mel = log_mel_frames(wave[settings.frame_index(frames)], settings)
    starts = range(0, frames - settings.window_frames + 1, settings.window_hop)
    windows = np.stack([log_mel[s : s + settings.window_frames] for s in starts])
    return block_mean(windows, settings.size)[..., None].astype(np.float32)


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


def task_settings(task):
    """The default feature settings of a task: `MfccSettings` for kws, `LogMelSettings` for
    ad, None for vww (images scaled to [0, 1])."""
    return {"kws": MfccSettings(), "ad": LogMelSettings()}.get(task)
