"""Tests of mnas.datasets.speech: the espeak-ng binding."""

import subprocess
import sys
import time

import numpy as np
import pytest

from mnas.datasets import speech
from mnas.datasets.speech import Espeak


@pytest.fixture(scope="module")
def engine():
    return Espeak()


def test_says_words_as_audio(engine):
    wave = engine.say("seven", "en-us+m3")
    assert engine.sample_rate == 22050 and wave.dtype == np.float32
    assert 0.2 < wave.size / engine.sample_rate < 1.5 and 0.05 < np.abs(wave).max() <= 1


def test_rate_changes_the_duration(engine):
    slow = engine.say("seven", "en", rate=100)
    fast = engine.say("seven", "en", rate=300)
    assert slow.size > 1.5 * fast.size


def test_variants_and_unknown_voices(engine):
    assert {"m1", "f2", "klatt", "whisper"} <= set(engine.variants())
    with pytest.raises(ValueError, match="espeak-ng does not know 'xx-nowhere'"):
        engine.say("yes", "xx-nowhere")


def test_seeded_noise_makes_whispers_repeatable():
    # espeak seeds its noise from the clock at start-up: compare two fresh processes (loading
    # the module file alone keeps them quick).
    code = (
        "import hashlib, importlib.util as u; "
        f"spec = u.spec_from_file_location('speech', {speech.__file__!r}); "
        "m = u.module_from_spec(spec); spec.loader.exec_module(m); "
        "print(hashlib.md5(m.Espeak().say('yes', 'en+whisper', seed=7).tobytes()).hexdigest())"
    )
    runs = []
    for _ in range(2):
        runs.append(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                   text=True, timeout=60))
        time.sleep(1.1)  # a different clock second, so an unseeded run would differ
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
