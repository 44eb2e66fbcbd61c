import numpy as np
import pytest

import mnas
from mnas import errors, search_spaces


def test_kws_space_is_the_micronets_backbone():
    space = search_spaces.get("kws")
    supernet = space.build()
    assert supernet.input_shape == (None, 49, 10, 1) and supernet.output_shape == (None, 12)
    skips = [s for s in mnas.searchable_layers(supernet) if isinstance(s, mnas.SearchableSkip)]
    assert len(skips) == 9
    assert space.choices[-1] == 276 and all(c % 4 == 0 for c in space.choices)


def test_samples_are_deterministic_and_within_the_space():
    space = search_spaces.get("ad", max_width=64)
    a = space.sample(np.random.default_rng(5))
    b = space.sample(np.random.default_rng(5))
    assert a == b
    assert set(a.widths()[:-1]) <= set(space.choices)


def test_extremes_bound_the_costs():
    space = search_spaces.get("kws", max_width=64, num_blocks=3)
    small = mnas.expected_costs(mnas.build(space.extreme(smallest=True))).numpy()
    large = mnas.expected_costs(mnas.build(space.extreme(smallest=False))).numpy()
    assert small.ops < large.ops and small.sram_bytes < large.sram_bytes
    assert mnas.minimum_costs(space.build()).ops == pytest.approx(small.ops)


def test_unknown_space_is_named():
    with pytest.raises(errors.UnknownNameError, match=r"`search_space`: expected one of "
                                                      r"\['ad', 'kws'\], received 'imagenet'"):
        search_spaces.get("imagenet")
