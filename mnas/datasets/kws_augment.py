"""Keyword-spotting features from cached mel spectra, and their per-epoch augmentation.

The cache holds each clip's mel power in dB (frames x mel bands, `features.mel_db`: kept
`features.MEL_DB_MARGIN` dB below the MFCC floor). MFCCs follow from it exactly as
`features.mfcc` computes them (`features.mfcc_of_mel_db`: the fixed floor, then the
orthonormal DCT-II), in numpy for evaluation and in TensorFlow inside the training pipeline,
where every epoch draws fresh waveform-like augmentation in the mel power domain:

- time shift by whole frames (the hop, 20 ms), the vacated frames silent;
- background noise added as power (mel power of clip + gain^2 x mel power of a noise crop,
  which is the expectation of the mixed signal's power for independent noise), the noise crop
  starting at a random frame of a random noise file;
- SpecAugment: runs of frames and of coefficients replaced by the training mean.

Features standardised by the run (`split.standardize`) are standardised here too, after the
MFCCs and before the masks.
"""

import numpy as np

from mnas.datasets import features


def mel_db(waves, settings):
    """Mel power in dB of clips (n, samples), as float32 (n, frames, n_mels) (`features.mel_db`)."""
    waves = np.asarray(waves, np.float32)
    if len(waves) == 0:
        return np.zeros((0, settings.shape[0], settings.n_mels), np.float32)
    return features.mel_db(waves, settings)


def mfcc_from_db(db, settings):
    """MFCCs (n, frames, n_mfcc, 1) of mel dB (n, frames, n_mels), in numpy."""
    return features.mfcc_of_mel_db(db, settings)[..., None].astype(np.float32)


def tf_mfcc_from_db(db, settings):
    """MFCCs (..., frames, n_mfcc, 1) of mel dB (..., frames, n_mels), in TensorFlow: the
    floor and DCT of `features.mfcc_of_mel_db`, with its DCT matrix."""
    import tensorflow as tf

    dct = tf.constant(features.dct_matrix(settings).T, tf.float32)
    floored = tf.maximum(tf.cast(db, tf.float32), float(settings.floor_db))
    return tf.tensordot(floored, dct, axes=1)[..., None]


def tf_standardize(x, standardization):
    """`(x - mean) / std` for `standardization` (mean, std), or `x` when it is None."""
    if standardization is None:
        return x
    import tensorflow as tf

    mean, std = standardization
    return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def noise_frames(noises, settings):
    """Mel dB frames of noise waveforms, concatenated, and each file's [first, end) frames."""
    parts, bounds, first = [], [], 0
    for wave in noises:
        if wave.size < settings.frame_samples:
            continue
        frames = mel_db(wave[None], settings)[0]
        parts.append(frames)
        bounds.append((first, first + len(frames)))
        first += len(frames)
    if not parts:
        return np.zeros((0, settings.n_mels), np.float32), np.zeros((0, 2), np.int64)
    return np.concatenate(parts), np.asarray(bounds, np.int64)


def example_fn(augmentation, settings, noise, noise_bounds, fill, standardization=None,
               time_masks=2, time_mask_frames=5, frequency_masks=1, frequency_mask_bins=2):
    """The per-example map `(mel dB, y, seed) -> (MFCC, y)` of the training pipeline.

    Args:
        augmentation: a `kws.Augmentation` (clean share, shift, noise share and volume).
        settings: the `MfccSettings` of the features.
        noise: mel dB frames of the training share of the noise files (`noise_frames`).
        noise_bounds: each noise file's [first, end) rows of `noise`.
        fill: the value of masked MFCCs, shape (1, n_mfcc, 1) (the training mean).
        standardization: (mean, std) the MFCCs are standardised with, or None. Defaults to
            None.
        time_masks: time masks per example. Defaults to 2.
        time_mask_frames: the widest time mask, in frames. Defaults to 5.
        frequency_masks: coefficient masks per example. Defaults to 1.
        frequency_mask_bins: the widest coefficient mask. Defaults to 2.
    """
    import tensorflow as tf

    frames, n_mfcc = settings.shape[0], settings.n_mfcc
    shift = int(round(augmentation.time_shift_ms / settings.hop_ms))
    noise_bounds = np.asarray(noise_bounds, np.int64).reshape(-1, 2)
    noise_bounds = noise_bounds[noise_bounds[:, 1] - noise_bounds[:, 0] >= frames]
    bounds = tf.constant(noise_bounds, tf.int64)
    noise_power = tf.constant(10 ** (noise / 10), tf.float32)
    fill = tf.constant(fill, tf.float32)
    amin = 10.0 ** ((settings.floor_db - features.MEL_DB_MARGIN) / 10.0)

    def uniform(seed, low, high, dtype=tf.float32):
        return tf.random.stateless_uniform([], seed, low, high, dtype)

    def mask(x, seeds, count, widest, axis, size):
        for i in range(count):
            width = uniform(seeds[2 * i], 0, widest + 1, tf.int32)
            start = uniform(seeds[2 * i + 1], 0, size - width + 1, tf.int32)
            positions = tf.range(size)
            hit = (positions >= start) & (positions < start + width)
            shape = [1, 1, 1]
            shape[axis] = size
            x = tf.where(tf.reshape(hit, shape), fill, x)
        return x

    def apply(db, y, seed):
        seeds = tf.random.experimental.stateless_split(seed, 6 + 2 * (time_masks + frequency_masks))
        power = tf.pow(10.0, db / 10.0)
        augmented = uniform(seeds[5], 0.0, 1.0) >= augmentation.clean_share
        if shift:
            offset = uniform(seeds[0], -shift, shift + 1, tf.int32) * tf.cast(augmented, tf.int32)
            padded = tf.pad(power, [[shift, shift], [0, 0]])
            power = padded[shift - offset: shift - offset + frames]
        if len(noise_bounds) and augmentation.background_frequency > 0:
            n_files = tf.shape(bounds, out_type=tf.int64)[0]
            pick = tf.random.stateless_uniform([], seeds[1], 0, n_files, tf.int64)
            low, high = bounds[pick, 0], bounds[pick, 1]
            start = tf.random.stateless_uniform([], seeds[2], low, high - frames + 1, tf.int64)
            gain = uniform(seeds[3], 0.0, augmentation.background_volume)
            mixed = augmented & (uniform(seeds[4], 0.0, 1.0) < augmentation.background_frequency)
            crop = noise_power[start:start + frames]
            power = power + tf.cast(mixed, tf.float32) * gain**2 * crop
        db = 10.0 * tf.math.log(tf.maximum(power, amin)) / tf.math.log(10.0)
        x = tf_standardize(tf_mfcc_from_db(db, settings), standardization)
        x = mask(x, seeds[6:], time_masks, time_mask_frames, 0, frames)
        x = mask(x, seeds[6 + 2 * time_masks:], frequency_masks, frequency_mask_bins, 1, n_mfcc)
        return x, y

    return apply
