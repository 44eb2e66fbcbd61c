"""Derivation: the argmax is the answer, repaired only when the exact estimator says it misses."""

import numpy as np
import pytest
import tf_keras as keras
from conftest import converted

import mnas
from mnas import arch, derivation, errors, search_spaces
from mnas.hardware import tflm


def space():
    return search_spaces.SearchSpace("toy", (16, 16, 1), 4, (3, 3), (1, 2), max_width=48,
                                     steps=12, dropout=0.0)


def measured_arena(spec, rng):
    return tflm.arena_usage(converted(arch.build(spec), rng)).total_bytes


def favour(model, picks, strength=2.0):
    """Logits that make `picks` the argmax, the other options less likely in order of distance."""
    for layer, pick in zip(mnas.searchable_layers(model), picks):
        layer.alpha.assign(-strength * np.abs(np.arange(layer.num_options) - pick)
                           .astype("float32"))


@pytest.fixture
def model():
    keras.utils.set_random_seed(0)
    model = space().build()
    # Narrow stem, two blocks kept at mid widths.
    favour(model, [2, 1, 5, 1, 6])
    return model


def test_a_loose_budget_keeps_the_argmax(model):
    argmax = arch.derive(model)
    found = derivation.derive_within(model, {"sram": 1e6, "flash": 1e6})
    assert found.changes == 0
    assert found.spec.widths() == argmax.widths()
    assert found.picks == found.argmax == derivation.argmax_picks(model)


def test_filling_the_budget_is_explicit_and_widens(model):
    found = derivation.derive_within(model, {"sram": 1e6}, fill_budget=True)
    assert found.changes > 0
    argmax = arch.derive(model).widths()
    assert all(w >= a for w, a in zip(found.spec.widths(), argmax))
    assert sum(found.spec.widths()) > sum(argmax)


def test_a_missed_target_is_repaired_and_fits_in_tflite_micro(model, rng):
    argmax_arena = derivation.exact_costs(model)["sram"]
    target = argmax_arena - 1  # One byte under: the differentiable cost cannot decide this.
    found = derivation.derive_within(model, {"sram": target})
    assert 0 < found.changes
    assert found.costs["sram"] <= target
    assert measured_arena(found.spec, rng) == found.costs["sram"]


def test_repair_narrows_what_the_search_found_least_sure_of(model):
    stem = mnas.searchable_layers(model)[0]
    # The stem's narrower option is almost as likely as its argmax: it goes first.
    logits = np.full(stem.num_options, -10.0, dtype="float32")
    logits[2], logits[1] = 5.0, 4.9
    stem.alpha.assign(logits)
    target = derivation.exact_costs(model)["sram"] - 1
    found = derivation.derive_within(model, {"sram": target})
    assert found.picks[0] < found.argmax[0]


def test_repair_undoes_the_steps_the_target_did_not_need():
    # Two stride-2 blocks: the arena's peak is the stem's output and the first stride-2 output,
    # so only the stem's width can meet the target, and the search decided it; the blocks are
    # undecided, so they are narrowed and skipped first, which lowers the arena too little.
    keras.utils.set_random_seed(0)
    model = search_spaces.SearchSpace("toy", (32, 32, 1), 4, (3, 3), (2, 2), max_width=48,
                                      steps=12, dropout=0.0).build()
    picks = [10, 1, 5, 1, 6]
    favour(model, picks, strength=0.01)
    stem = mnas.searchable_layers(model)[0]
    stem.alpha.assign(-10.0 * np.abs(np.arange(stem.num_options) - picks[0]).astype("float32"))
    narrower_stem = [picks[0] - 1] + picks[1:]
    target = derivation.exact_costs(model, narrower_stem)["sram"]
    assert derivation.exact_costs(model, [picks[0], 0, 0, 0, 0])["sram"] > target
    found = derivation.derive_within(model, {"sram": target})
    assert found.picks == narrower_stem
    assert found.changes == 1
    assert found.costs["sram"] == target


def test_logits_are_left_as_they_were(model):
    before = [layer.alpha.numpy().copy() for layer in mnas.searchable_layers(model)]
    derivation.derive_within(model, {"sram": derivation.exact_costs(model)["sram"] - 1},
                             fill_budget=True)
    for layer, alpha in zip(mnas.searchable_layers(model), before):
        np.testing.assert_array_equal(layer.alpha.numpy(), alpha)


def test_reachability_uses_the_same_exact_figure_as_derivation(model):
    smallest = derivation.smallest_costs(model)
    found = derivation.derive_within(model, {"sram": smallest["sram"]})
    assert found.costs["sram"] == smallest["sram"]
    with pytest.raises(errors.BudgetUnreachableError,
                       match=rf"below the smallest sram .* {smallest['sram']:,.0f} bytes"):
        derivation.derive_within(model, {"sram": smallest["sram"] - 1})


def test_a_latency_target_needs_a_device(model):
    with pytest.raises(ValueError, match=r"Invalid value for `targets`"):
        derivation.derive_within(model, {"latency": 10.0})
    device = mnas.get_device("STM32F446RE")
    found = derivation.derive_within(model, {"latency": 1000.0}, device=device)
    assert found.costs["latency"] <= 1000.0


def test_fixed_choices_checks_and_restores(model):
    searchable = mnas.searchable_layers(model)
    with pytest.raises(ValueError, match=r"Invalid value for `picks`"):
        with derivation.fixed_choices(model, [0]):
            pass
    before = searchable[0].alpha.numpy().copy()
    with derivation.fixed_choices(model, [0] * len(searchable)):
        assert arch.derive(model).widths()[0] == searchable[0].choices[0]
    np.testing.assert_array_equal(searchable[0].alpha.numpy(), before)


def test_commit_fixes_the_most_certain_open_decision_to_its_most_probable_option(model):
    stem = mnas.searchable_layers(model)[0]
    stem.alpha.assign(stem.alpha * 3.0)  # The stem is now the most certain decision.
    committed = [None] * 5
    done = derivation.commit(model, committed, 1, {"sram": 1e6})
    assert [(i, option) for i, option, _, _ in done] == [(0, 2)]
    assert committed == [2, None, None, None, None]
    assert done[0][2] == pytest.approx(float(np.max(stem.probabilities())))
    derivation.commit(model, committed, 4, {"sram": 1e6})
    assert committed == derivation.argmax_picks(model)


def test_commit_takes_the_most_probable_option_that_keeps_the_budget_reachable(model):
    stem = mnas.searchable_layers(model)[0]
    stem.alpha.assign(stem.alpha * 3.0)
    # One byte under the stem's argmax with everything else at its smallest option.
    target = derivation.exact_costs(model, [2, 0, 0, 0, 0])["sram"] - 1
    committed = [None] * 5
    derivation.commit(model, committed, 1, {"sram": target})
    assert committed[0] == 1  # The next most probable option; 3 is as probable but wider.
    derivation.commit(model, committed, 4, {"sram": target})
    assert derivation.exact_costs(model, committed)["sram"] <= target


def test_commit_breaks_ties_toward_the_wider_option_as_the_argmax_does(model):
    searchable = mnas.searchable_layers(model)
    for layer in searchable:
        layer.alpha.assign(np.zeros(layer.num_options, "float32"))
    committed = [None] * 5
    derivation.commit(model, committed, 5, {"sram": 1e9})
    assert committed == [layer.num_options - 1 for layer in searchable]
    assert committed == derivation.argmax_picks(model)
    # A decision of one option is certain; uniform ones are not at all.
    assert derivation.certainty([1.0]) == 1.0
    assert derivation.certainty([0.25] * 4) == pytest.approx(0.0, abs=1e-9)
