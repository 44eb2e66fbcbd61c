"""Tests of mnas.blackbox: keras-tuner's oracles over the supernet's choices, exact rejection."""

import json
import os
import subprocess
import sys
import time

import pytest

from mnas import blackbox, derivation, devices, errors, search_spaces
from mnas import layers as mlayers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def supernet():
    return search_spaces.get("kws", steps=3, max_width=24, num_blocks=2).build()


@pytest.fixture(scope="module")
def sram_target(supernet):
    """A target between the smallest and the largest architecture's exact arena."""
    small = derivation.smallest_costs(supernet)["sram"]
    large = derivation.exact_costs(
        supernet, [layer.num_options - 1 for layer in mlayers.searchable_layers(supernet)])
    return (small + large["sram"]) / 2


def test_hyperparameters_are_the_supernets_decisions(supernet):
    space = blackbox.hyperparameters(supernet)
    searchable = mlayers.searchable_layers(supernet)
    assert len(space.space) == len(searchable)
    for hp, layer in zip(space.space, searchable):
        assert (hp.min_value, hp.max_value) == (0, layer.num_options - 1)
    values = {hp.name: hp.max_value for hp in space.space}
    assert blackbox.picks_of(values, supernet) == [x.num_options - 1 for x in searchable]


@pytest.mark.parametrize("method", blackbox.METHODS)
def test_search_trains_only_candidates_that_fit_and_returns_the_best(
        supernet, sram_target, method, tmp_path):
    trained = []

    def evaluate(picks, trial_id):
        trained.append(list(picks))
        return sum(picks) / 100.0  # Wider scores higher: the best is the widest that fits.

    found = blackbox.search(supernet, evaluate, {"sram": sram_target}, method=method,
                            max_trials=3, directory=str(tmp_path), say=lambda line: None)
    assert found["trained"] == len(trained) == 3
    for record in found["trials"]:
        fits = record["costs"]["sram"] <= sram_target
        assert record["fits"] == fits
        assert (record["picks"] in trained) == fits
        # Rejection is decided by the real TFLite Micro arena of the derived model.
        assert record["costs"]["sram"] == derivation.exact_costs(supernet, record["picks"])["sram"]
    assert found["picks"] == max(trained, key=sum)
    assert found["val_accuracy"] == pytest.approx(sum(found["picks"]) / 100.0)


def test_interrupted_search_resumes_without_repeating_trials(supernet, tmp_path):
    seen = []

    def evaluate(picks, trial_id):
        seen.append(trial_id)
        return 0.5

    quiet = {"say": lambda line: None, "directory": str(tmp_path)}
    blackbox.search(supernet, evaluate, {"flash": 1e9}, max_trials=2, **quiet)
    found = blackbox.search(supernet, evaluate, {"flash": 1e9}, max_trials=4, **quiet)
    assert found["trained"] == 4
    assert len(seen) == len(set(seen)) == 4


def test_seconds_budget_stops_new_trials(supernet, tmp_path):
    found = blackbox.search(supernet, lambda picks, trial_id: 0.5, {"flash": 1e9},
                            seconds=1e-3, directory=str(tmp_path), say=lambda line: None)
    assert found["trained"] == len(found["trials"]) == 1


def test_the_seconds_budget_is_wall_clock_with_the_oracles_own_time(supernet, tmp_path,
                                                                   monkeypatch):
    import keras_tuner

    populate = keras_tuner.oracles.RandomSearchOracle.populate_space

    def slow_populate(self, trial_id):  # An oracle that thinks for 1 s per trial.
        time.sleep(1.0)
        return populate(self, trial_id)

    monkeypatch.setattr(keras_tuner.oracles.RandomSearchOracle, "populate_space", slow_populate)
    found = blackbox.search(supernet, lambda picks, trial_id: 0.5, {"flash": 1e9}, seconds=1.5,
                            directory=str(tmp_path), say=lambda line: None)
    # Trials alone take a fraction of a second each: counting only them would start more.
    assert found["trained"] <= 2
    assert found["seconds"] >= 1.0
    assert [r["elapsed"] for r in found["trials"]] == sorted(r["elapsed"] for r in found["trials"])


def test_bad_arguments(supernet, tmp_path):
    with pytest.raises(ValueError, match="expected a budget"):
        blackbox.search(supernet, None, {"flash": 1e9}, directory=str(tmp_path))
    with pytest.raises(ValueError, match="Invalid value for `method`"):
        blackbox.make_oracle("grid", supernet)
    with pytest.raises(errors.BudgetUnreachableError, match="no trial of the random search"):
        smallest = derivation.smallest_costs(supernet)["sram"]
        # Only the smallest architecture fits: two random trials are unlikely to draw it.
        blackbox.search(supernet, None, {"sram": smallest}, seconds=1e-3,
                        directory=str(tmp_path), say=lambda line: None)


def test_widest_within_is_the_widest_uniform_width_that_fits(supernet, sram_target):
    picks, costs = blackbox.widest_within(supernet, {"sram": sram_target})
    searchable = mlayers.searchable_layers(supernet)
    assert costs["sram"] <= sram_target
    widths = [p for p, layer in zip(picks, searchable)
              if not isinstance(layer, mlayers.SearchableSkip)]
    assert len(set(widths)) == 1
    wider = [p + 1 if not isinstance(layer, mlayers.SearchableSkip) else p
             for p, layer in zip(picks, searchable)]
    assert derivation.exact_costs(supernet, wider)["sram"] > sram_target


def test_widest_within_with_a_latency_target(supernet):
    device = devices.get_device("STM32F446RE")
    smallest = derivation.smallest_costs(supernet, device)["latency"]
    picks, costs = blackbox.widest_within(supernet, {"latency": smallest * 1.5}, device)
    assert costs["latency"] <= smallest * 1.5


def test_train_with_bayesian_search_writes_the_best_trial_and_finishes(tiny_ad_flags,
                                                                      tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mnas.train", *tiny_ad_flags, f"--out_dir={out}",
               "--device=STM32F446RE", "--search=bayesian", "--search_trials=2"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "best of 2 trained trials" in result.stdout
    with open(out / "search" / "search.json") as f:
        search = json.load(f)
    with open(out / "search" / "trials.jsonl") as f:
        trials = [json.loads(line) for line in f]
    best = max((t for t in trials if t["fits"]), key=lambda t: t["val_accuracy"])
    assert search["picks"] == best["picks"] and search["method"] == "bayesian"
    with open(out / "report.json") as f:
        report = json.load(f)
    assert report["fits"] and report["search"]["trained"] == 2


def test_black_box_search_needs_a_budget(tmp_path):
    command = [sys.executable, "-m", "mnas.train", "--task=ad", f"--out_dir={tmp_path}",
               "--search=random", "--search_trials=0"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode != 0
    assert "needs a budget" in result.stderr
