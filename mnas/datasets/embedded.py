"""Generates the embedded synthetic datasets, in the layouts of the real ones.

Everything is computed on the machine from a seed: no download. The datasets are synthetic
stand-ins that let mnas run end to end on a fresh machine; they are not the MLPerf Tiny
benchmarks and their accuracies are not comparable with published figures.

- kws: keywords and other words spoken by espeak-ng across its English accents and voice
  variants, speeds and pitches, placed at random in 1 s clips and mixed with generated noise;
  generated background-noise files (the source of silence clips); validation and test lists
  hold voice variants that training never hears (Speech Commands v2 layout).
- ad: one machine type with four machine IDs: harmonic hum with its own fundamental and
  timbre per ID, noise and load changes; the test split adds anomalies (impacts, imbalance
  modulation, bearing whine) (DCASE2020 task 2 layout).
- vww: drawn person figures against cluttered drawn backgrounds, and the same kind of
  backgrounds without them (`person/`, `non_person/`).

The command line is `python -m mnas.datasets.generate` (see `mnas.datasets.generate`).
"""

import concurrent.futures
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mnas.datasets.audio import write_wav
from mnas.errors import DatasetError

SAMPLE_RATE = 16000
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
OTHER_WORDS = (
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "zero",
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "backward",
    "forward", "follow", "learn", "visual",
)
ACCENTS = (
    "en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
)
# Each speaker says every keyword this many times, and this many other words.
KEYWORD_REPEATS, OTHER_WORDS_PER_SPEAKER = 2, 4
MACHINE = "synthetic_machine"
MACHINE_IDS = ("id_00", "id_01", "id_02", "id_03")
DESCRIPTIONS = {
    "kws": "Synthetic keyword-spotting data in the Speech Commands v2 layout: words spoken by "
           "the espeak-ng synthesiser, generated noise. Not the Speech Commands benchmark.",
    "ad": "Synthetic machine sounds in the DCASE2020 task 2 layout (one machine type, four "
          "IDs). Not the MIMII / ToyADMOS benchmark.",
    "vww": "Synthetic drawn person / no-person images in the visual-wake-words folder layout. "
           "Not the COCO-based Visual Wake Words benchmark.",
}


def colored_noise(length, exponent, rng):
    """Noise with power spectrum ~ 1 / f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = rng.normal(size=length // 2 + 1) + 1j * rng.normal(size=length // 2 + 1)
    frequencies = np.maximum(np.fft.rfftfreq(length), 1.0 / length)
    noise = np.fft.irfft(spectrum / frequencies ** (exponent / 2), n=length)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def _smooth_walk(length, points, rng):
    """A smooth random curve in about [-1, 1], through `points` random control values."""
    control = rng.uniform(-1, 1, size=points)
    return np.interp(np.linspace(0, points - 1, length), np.arange(points), control)


# Keyword spotting ----------------------------------------------------------------------------


def _speaker_id(voice):
    import hashlib

    return hashlib.sha1(voice.encode()).hexdigest()[:8]


def _kws_speakers(variants, seed, accents_per_variant):
    """(voice, split) pairs: variants are split 70/15/15 so held-out splits have new voices."""
    rng = np.random.default_rng([seed, 1])
    order = rng.permutation(len(variants))
    n_held = max(1, round(0.15 * len(variants)))
    speakers = []
    for rank, index in enumerate(order):
        split = "test" if rank < n_held else "validation" if rank < 2 * n_held else "train"
        for accent in rng.choice(ACCENTS, size=accents_per_variant, replace=False):
            speakers.append((f"{accent}+{variants[index]}", split))
    return speakers


def _kws_block(jobs):
    """Synthesises and writes the clips of several speakers, in order, in this process.

    espeak-ng carries state from one utterance to the next (filters), so its output depends
    on what it said before: each block runs in a fresh process, which makes the data
    a function of the seed and the number of workers alone.

    Returns:
        The relative paths written, per speaker.
    """
    from mnas.datasets.speech import Espeak

    engine = Espeak()
    return [_kws_speaker_clips(engine, *job) for job in jobs]


def _kws_speaker_clips(engine, out, seed, index, voice, repeats, n_other):
    """Synthesises and writes one speaker's clips; returns their relative paths."""
    import soxr

    rng = np.random.default_rng([seed, 2, index])
    words = [w for w in KEYWORDS for _ in range(repeats)]
    words += list(rng.choice(OTHER_WORDS, size=n_other, replace=False))
    speaker = _speaker_id(voice)
    written = []
    for count, word in enumerate(words):
        raw = engine.say(word, voice, rate=rng.uniform(120, 260), pitch=rng.integers(20, 81),
                         pitch_range=rng.integers(10, 91), seed=rng.integers(2**31))
        wave = soxr.resample(raw, engine.sample_rate, SAMPLE_RATE).astype(np.float32)
        loud = np.flatnonzero(np.abs(wave) > 0.02 * (np.abs(wave).max() + 1e-9))
        margin = int(0.02 * SAMPLE_RATE)
        if loud.size:
            wave = wave[max(loud[0] - margin, 0) : loud[-1] + margin][:SAMPLE_RATE]
        wave = wave / (np.abs(wave).max() + 1e-9) * 10 ** (rng.uniform(-18, -1) / 20)
        clip = np.zeros(SAMPLE_RATE, np.float32)
        start = rng.integers(0, SAMPLE_RATE - wave.size + 1)
        clip[start : start + wave.size] = wave
        speech_rms = np.sqrt(np.mean(wave**2)) + 1e-9
        noise = colored_noise(SAMPLE_RATE, rng.uniform(0, 2), rng)
        clip += noise * speech_rms * 10 ** (-rng.uniform(10, 40) / 20)
        relative = f"{word}/{speaker}_nohash_{count}.wav"
        write_wav(Path(out) / relative, clip, SAMPLE_RATE)
        written.append(relative)
    return written


def _background_noises(rng, seconds):
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 8))
    fan = colored_noise(n, 1.5, rng) * (1 + 0.3 * np.sin(2 * np.pi * 23 * t))
    tap = np.diff(colored_noise(n + 1, 0.5, rng)) * (1 + 0.5 * _smooth_walk(n, 60, rng))
    babble = sum(colored_noise(n, 1.0, rng) * np.maximum(_smooth_walk(n, 4 * seconds, rng), 0)
                 for _ in range(6))
    noises = {
        "white_noise": colored_noise(n, 0.0, rng),
        "pink_noise": colored_noise(n, 1.0, rng),
        "brown_noise": colored_noise(n, 2.0, rng),
        "mains_hum": hum + 0.1 * colored_noise(n, 1.0, rng),
        "fan": fan,
        "running_tap": tap,
        "babble": babble,
    }
    return {name: 0.3 * wave / np.abs(wave).max() for name, wave in noises.items()}


def write_kws(out, seed, say, scale=1.0, workers=2):
    """Writes the keyword-spotting set into `out` (Speech Commands v2 layout)."""
    from mnas.datasets.speech import Espeak

    # "Demonic" crashes espeak-ng 1.52 (segmentation fault) on some words; the names with a
    # space cannot be given as "accent+variant".
    variants = [v for v in Espeak().variants() if " " not in v and v != "Demonic"]
    accents_per_variant = max(1, min(len(ACCENTS), round(3 * scale)))
    if scale < 1:
        variants = variants[: max(7, round(len(variants) * scale))]
    speakers = _kws_speakers(variants, seed, accents_per_variant)
    rng = np.random.default_rng([seed, 3])
    for name, wave in _background_noises(rng, 30).items():
        write_wav(out / "_background_noise_" / f"{name}.wav", wave, SAMPLE_RATE)
    jobs = [(str(out), seed, i, voice, KEYWORD_REPEATS, OTHER_WORDS_PER_SPEAKER)
            for i, (voice, _) in enumerate(speakers)]
    per_speaker = KEYWORD_REPEATS * len(KEYWORDS) + OTHER_WORDS_PER_SPEAKER
    say(f"kws: {len(speakers)} speakers ({len(variants)} voice variants), "
        f"{len(jobs) * per_speaker} clips")
    blocks = [jobs[w::workers] for w in range(workers)]
    # A pool would hang if espeak crashed a worker; an executor raises BrokenProcessPool.
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
    ) as executor:
        done = list(executor.map(_kws_block, blocks))
    written = [None] * len(jobs)
    for w, paths in enumerate(done):
        written[w::workers] = paths
    lists = {"validation": [], "test": []}
    for (_, split), paths in zip(speakers, written):
        if split in lists:
            lists[split].extend(paths)
    (out / "validation_list.txt").write_text("".join(p + "\n" for p in lists["validation"]))
    (out / "testing_list.txt").write_text("".join(p + "\n" for p in lists["test"]))
    return {"clips": sum(map(len, written)), "speakers": len(speakers), "workers": workers,
            "validation_clips": len(lists["validation"]), "test_clips": len(lists["test"])}


# Anomaly detection ---------------------------------------------------------------------------


def _machine_profile(seed, index):
    rng = np.random.default_rng([seed, 4, index])
    return {
        "f0": (46.0, 57.0, 69.0, 83.0)[index % 4] * rng.uniform(0.97, 1.03) * (1 + index // 4),
        "harmonics": rng.lognormal(0, 0.6, size=24) / np.arange(1, 25) ** rng.uniform(0.7, 1.4),
        "noise_color": rng.uniform(0.5, 1.5),
        "noise_level": rng.uniform(0.05, 0.25),
    }


def machine_sound(profile, seconds, rng, anomaly=False):
    """One clip of a machine: hum, noise and load changes, plus an anomaly if asked."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    load = _smooth_walk(n, max(2, int(seconds)), rng)
    f0 = profile["f0"] * (1 + 0.015 * load + rng.uniform(-0.01, 0.01))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    # sum_k a_k sin(k phase + p_k) = Im(sum_k a_k e^{i p_k} z^k), z = e^{i phase}: Horner's
    # rule needs one complex multiply per harmonic instead of one sine.
    usable = [k for k in range(1, len(profile["harmonics"]) + 1)
              if k * profile["f0"] < SAMPLE_RATE / 2 - 500]
    weights = profile["harmonics"][: len(usable)] * np.exp(1j * rng.uniform(0, 2 * np.pi,
                                                                           len(usable)))
    z = np.exp(1j * phase)
    total = np.zeros(n, complex)
    for weight in weights[::-1]:
        total = (total + weight) * z
    hum = total.imag
    hum *= 1 + 0.25 * load
    hum /= np.sqrt(np.mean(hum**2))
    wave = hum + profile["noise_level"] * rng.uniform(0.7, 1.3) * colored_noise(
        n, profile["noise_color"], rng)
    if anomaly:
        kind = rng.integers(3)
        strength = rng.uniform(0.3, 1.0)
        if kind == 0:  # impacts: decaying broadband bursts
            for start in rng.integers(0, n - 2000, size=rng.integers(2, 4 * int(seconds))):
                burst = colored_noise(2000, 0.5, rng) * np.exp(-np.arange(2000) / 250)
                wave[start : start + 2000] += 3 * strength * burst
        elif kind == 1:  # imbalance: modulation at the rotation rate
            rotation = profile["f0"] / rng.integers(2, 5)
            wave *= 1 + 0.6 * strength * np.sin(2 * np.pi * rotation * t)
        else:  # bearing whine: a high wobbling tone
            whine = rng.uniform(2000, 6000) * (1 + 0.01 * _smooth_walk(n, 8, rng))
            wave += 0.4 * strength * np.sin(2 * np.pi * np.cumsum(whine) / SAMPLE_RATE)
    return (0.5 * rng.uniform(0.6, 1.0) * wave / np.abs(wave).max()).astype(np.float32)


def write_ad(out, seed, say, scale=1.0, seconds=6.0, train=60, test=20):
    """Writes the anomaly-detection set into `out` (DCASE2020 task 2 layout)."""
    train, test = max(2, round(train * scale)), max(1, round(test * scale))
    say(f"ad: {len(MACHINE_IDS)} machine IDs, {train} train + {2 * test} test clips each")
    for index, machine_id in enumerate(MACHINE_IDS):
        profile = _machine_profile(seed, index)
        rng = np.random.default_rng([seed, 5, index])
        for kind, folder, count in (("normal", "train", train), ("normal", "test", test),
                                    ("anomaly", "test", test)):
            for number in range(count):
                wave = machine_sound(profile, seconds, rng, anomaly=kind == "anomaly")
                path = out / MACHINE / folder / f"{kind}_{machine_id}_{number:08d}.wav"
                write_wav(path, wave, SAMPLE_RATE)
    return {"machine": MACHINE, "ids": list(MACHINE_IDS), "train_per_id": train,
            "test_per_id": 2 * test, "seconds": seconds}


# Visual wake words ---------------------------------------------------------------------------


def _color(rng, low=0, high=256):
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _draw_background(draw, size, rng):
    horizon = int(rng.uniform(0.3, 0.8) * size)
    draw.rectangle([0, horizon, size, size], fill=_color(rng, 40, 200))
    for _ in range(rng.integers(4, 15)):
        x0, y0 = rng.integers(-size // 4, size, size=2)
        w, h = rng.integers(size // 12, size // 2, size=2)
        shape = rng.integers(5)
        if shape == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=_color(rng))
        elif shape == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=_color(rng))
        elif shape == 2:
            draw.polygon([(x0, y0 + h), (x0 + w // 2, y0), (x0 + w, y0 + h)], fill=_color(rng))
        elif shape == 3:  # poles and trees: upright shapes that are not people
            draw.rectangle([x0, y0, x0 + max(2, w // 6), y0 + h], fill=_color(rng, 0, 160))
            draw.ellipse([x0 - w // 3, y0 - w // 3, x0 + w // 3, y0 + w // 3], fill=_color(rng))
        else:
            draw.line([(x0, y0), (x0 + w, y0 + h)], fill=_color(rng), width=int(rng.integers(1, 4)))


def _draw_person(draw, size, rng):
    height = rng.uniform(0.35, 1.1) * size
    cx = rng.uniform(0.1, 0.9) * size
    feet = rng.uniform(0.55, 1.25) * size
    top = feet - height
    skin = ((224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172), (92, 56, 29))
    skin = skin[rng.integers(len(skin))]
    shirt, trousers = _color(rng), _color(rng, 0, 160)
    head = 0.075 * height
    neck_y, hip_y = top + 2 * head + 0.02 * height, top + 0.52 * height
    half = rng.uniform(0.09, 0.13) * height
    limb = max(2, int(0.07 * height))
    for side in (-1, 1):  # legs
        angle = rng.uniform(-0.35, 0.35)
        foot = (cx + side * half * 0.5 + math.sin(angle) * 0.48 * height, feet)
        draw.line([(cx + side * half * 0.5, hip_y), foot], fill=trousers, width=limb)
    draw.polygon([(cx - half, neck_y), (cx + half, neck_y), (cx + half * 0.8, hip_y),
                  (cx - half * 0.8, hip_y)], fill=shirt)
    for side in (-1, 1):  # arms
        angle = rng.uniform(-0.3, 1.8)
        shoulder = (cx + side * half, neck_y + limb / 2)
        hand = (shoulder[0] + side * math.sin(angle) * 0.33 * height,
                shoulder[1] + math.cos(angle) * 0.33 * height)
        draw.line([shoulder, hand], fill=shirt, width=max(2, int(limb * 0.8)))
        draw.ellipse([hand[0] - limb / 2, hand[1] - limb / 2, hand[0] + limb / 2,
                      hand[1] + limb / 2], fill=skin)
    draw.ellipse([cx - head, top, cx + head, top + 2 * head], fill=skin)
    draw.chord([cx - head, top - 0.2 * head, cx + head, top + 1.2 * head], 180, 360,
               fill=_color(rng, 0, 120))


def write_vww(out, seed, say, scale=1.0, size=96, per_class=1000):
    """Writes the visual-wake-words set into `out` (`person/`, `non_person/`)."""
    from PIL import Image, ImageDraw, ImageFilter

    per_class = max(2, round(per_class * scale))
    say(f"vww: {per_class} person + {per_class} non_person images of {size}x{size}")
    for label, folder in ((1, "person"), (0, "non_person")):
        (out / folder).mkdir(parents=True)
        for number in range(per_class):
            rng = np.random.default_rng([seed, 6, label, number])
            mix = np.linspace(0, 1, size)[:, None, None]
            sky = np.asarray(_color(rng)) * (1 - mix) + np.asarray(_color(rng)) * mix
            image = Image.fromarray(np.broadcast_to(sky, (size, size, 3)).astype(np.uint8))
            draw = ImageDraw.Draw(image)
            _draw_background(draw, size, rng)
            if label:
                _draw_person(draw, size, rng)
            if rng.uniform() < 0.5:  # something in front, as people are often occluded
                x0, y0 = rng.integers(0, size, size=2)
                w, h = rng.integers(size // 10, size // 3, size=2)
                draw.rectangle([x0, y0, x0 + w, y0 + h], fill=_color(rng))
            image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.0)))
            pixels = np.asarray(image, np.float32)
            pixels += rng.normal(0, rng.uniform(0, 12), size=pixels.shape)
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            image.save(out / folder / f"synthetic_{folder}_{number:05d}.jpg", quality=90)
    return {"per_class": per_class, "size": size}


_WRITERS = {"kws": write_kws, "ad": write_ad, "vww": write_vww}
TASKS = tuple(_WRITERS)  # The tasks with an embedded dataset.


def generate_embedded(root="data/embedded", seed=0, tasks=TASKS, scale=1.0, workers=2,
                      verbose=True):
    """Generates the embedded datasets under `root`, one folder per task.

    The data is a function of `seed`, `scale` and `workers` (speech synthesis keeps state
    within a worker process). A task whose folder is already complete (it holds the
    MANIFEST.json written last) is skipped, so running this again is cheap. Each task is
    written to a temporary folder and renamed when done, so an interrupted run leaves no half
    dataset.

    Args:
        root: the parent folder. Defaults to "data/embedded".
        seed: the seed everything is drawn from. Defaults to 0.
        tasks: which of "kws", "ad", "vww" to write. Defaults to all.
        scale: multiplies the number of examples (below 1 for quick tests). Defaults to 1.
        workers: processes for speech synthesis. Defaults to 2.
        verbose: print progress. Defaults to True.

    Returns:
        {task: Path of its folder}.

    Raises:
        DatasetError: a task folder exists, is not empty and is not a complete generated
            dataset (it is never overwritten).

    Example:
        >>> generate_embedded("/tmp/embedded", tasks=["ad"], scale=0.1)  # doctest: +SKIP
    """
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t]
    unknown = [t for t in tasks if t not in _WRITERS]
    if unknown or not tasks:
        raise ValueError(
            f"Invalid value for `tasks`: expected names among {TASKS}, received {tasks!r}."
        )
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"Invalid value for `workers`: expected a positive integer, received "
                         f"{workers!r}.")
    if scale <= 0:
        raise ValueError(f"Invalid value for `scale`: expected a positive number, received "
                         f"{scale!r}.")

    def say(message):
        if verbose:
            print(message, flush=True)

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    folders = {}
    for task in tasks:
        target = folders[task] = root / task
        manifest = target / "MANIFEST.json"
        if manifest.is_file():
            found = json.loads(manifest.read_text())
            note = "" if found.get("seed") == seed else (
                f" (generated with seed {found.get('seed')}, not {seed}: remove the folder to "
                f"regenerate)")
            say(f"{task}: complete at {target}, kept{note}")
            continue
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise DatasetError(
                f"Refusing to write the embedded {task} dataset: expected {str(target)!r} to be "
                f"absent, empty or a complete generated dataset; received a non-empty folder "
                f"without MANIFEST.json. Move it away (or delete it) and run again."
            )
        started = time.time()
        temporary = Path(tempfile.mkdtemp(prefix=f".{task}-partial-", dir=root))
        try:
            kwargs = {"workers": workers} if task == "kws" else {}
            counts = _WRITERS[task](temporary, seed, say, scale=scale, **kwargs)
            info = {"task": task, "synthetic": True, "description": DESCRIPTIONS[task],
                    "seed": seed, "scale": scale, "generator": "mnas.datasets.generate",
                    "counts": counts}
            (temporary / "MANIFEST.json").write_text(json.dumps(info, indent=2) + "\n")
            if target.exists():
                target.rmdir()
            os.rename(temporary, target)
        finally:
            if temporary.exists():
                shutil.rmtree(temporary)
        say(f"{task}: written to {target} in {time.time() - started:.1f} s")
    return folders
