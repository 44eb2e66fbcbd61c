"""A minimal ctypes binding of espeak-ng, from the PyPI package `espeakng-loader`.

espeak-ng keeps global state and is not thread-safe: use one `Espeak` per process.
"""

import ctypes
from pathlib import Path

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_RATE, _PITCH, _RANGE = 1, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class Espeak:
    """espeak-ng speech synthesis into numpy arrays.

    Example:
        >>> engine = Espeak()
        >>> wave = engine.say("yes", "en-us+f2")
        >>> engine.sample_rate, wave.dtype
        (22050, dtype('float32'))
    """

    def __init__(self):
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._data_path = Path(espeakng_loader.get_data_path())
        self.sample_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self._data_path).encode(), 0
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise from {self._data_path}.")
        self._chunks = []

        def collect(samples, count, events):
            if count > 0:
                self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
            return 0

        # Kept on the instance: ctypes callbacks must outlive their registration.
        self._callback = _CALLBACK(collect)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]

    def variants(self):
        """Names of the voice variants shipped with the data (m1..m7, f1..f5, klatt, ...)."""
        return sorted(p.name for p in (self._data_path / "voices" / "!v").iterdir() if p.is_file())

    def say(self, text, voice, rate=175, pitch=50, pitch_range=50, seed=0):
        """Synthesises `text` and returns float32 samples in [-1, 1] at `self.sample_rate`.

        Args:
            text: what to say.
            voice: an espeak voice name, optionally with a variant ("en-us+m3").
            rate: speed in words per minute (80 to 450).
            pitch: base pitch, 0 to 100.
            pitch_range: pitch variation, 0 to 100.
            seed: seed of espeak's noise source (breathy and whispering voices), which it
                otherwise seeds from the clock.

        Raises:
            ValueError: espeak does not know `voice`.
        """
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"Invalid value for `voice`: espeak-ng does not know {voice!r}.")
        for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(parameter, int(value), 0)
        self._lib.espeak_ng_SetRandSeed(int(seed))
        self._chunks = []
        data = text.encode()
        self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
        self._lib.espeak_Synchronize()
        if not self._chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0
