import numpy as np
import pytest

import mnas
from mnas import arch, errors, layers, search_spaces


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
    with pytest.raises(errors.UnknownNameError,
                       match=r"`search_space`: expected one of \['ad', 'kws', 'vww'\], "
                             r"received 'imagenet'"):
        search_spaces.get("imagenet")


@pytest.fixture(scope="module")
def vww_space():
    return search_spaces.get("vww")


def test_vww_space_is_a_reduced_mobilenet_v2(vww_space):
    supernet = vww_space.build()
    assert supernet.input_shape == (None, 50, 50, 1) and supernet.output_shape == (None, 2)
    assert supernet.mnas_backbone == "mobilenet_v2"
    stages = [x for x in supernet.layers if isinstance(x, layers.SearchableInvertedBottleneck)]
    assert [x.max_width for x in stages] == [16, 24, 32, 64, 96]
    assert [x.strides[0] for x in stages] == [1, 2, 2, 2, 1]
    assert [x.expand_layers[0].max_width for x in stages] == [32, 96, 144, 192, 384]
    searchable = mnas.searchable_layers(supernet)
    assert all(c % 4 == 0 for x in searchable if hasattr(x, "choices") for c in x.choices)
    assert len([x for x in searchable if isinstance(x, layers.DepthDecision)]) == 4
    assert stages[0].choices == [4, 8, 12, 16]
    assert stages[-1].choices == mnas.width_choices(96)  # 10%, 20%, ... 100%.


def test_vww_extremes_span_the_small_mcu(vww_space):
    small = mnas.expected_costs(mnas.build(vww_space.extreme(smallest=True))).numpy()
    large = mnas.expected_costs(mnas.build(vww_space.extreme(smallest=False))).numpy()
    device = mnas.get_device("STM32F446RE")
    assert small.sram_bytes < device.sram_budget_bytes
    assert small.flash_bytes < device.flash_budget_bytes
    # The widest is like MicroNets' VWW models, hundreds of KB, too big for this device.
    assert 300e3 < large.flash_bytes < 1e6 and large.sram_bytes > device.sram_budget_bytes
    assert mnas.minimum_costs(vww_space.build()).ops == pytest.approx(small.ops)


def test_vww_samples_are_deterministic_and_within_the_space(vww_space):
    a = vww_space.sample(np.random.default_rng(7))
    assert a == vww_space.sample(np.random.default_rng(7))
    assert a.input_shape == [50, 50, 1] and a.backbone == "mobilenet_v2"
    widths, expansions = [], []
    previous = 32  # The stem's widest.
    for t, c, n, _ in vww_space.stages:
        widths.append(mnas.width_choices(c))
        expansions.append([mnas.width_choices(t * w) for w in [previous] + [c] * (n - 1)])
        previous = c
    for entry in (e for e in a.layers if e["type"] == "ib"):
        stage = int(entry["source"][len("stage"):])
        assert entry["filters"] in widths[stage]
        assert entry["expand"] in expansions[stage][entry["block"]]
    assert arch.build(a).output_shape == (None, 2)


def test_vww_options_and_their_errors():
    space = search_spaces.get("vww", input_shape=(96, 96, 3), num_blocks=4, max_width=48, steps=4)
    assert space.stages == ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 1, 2))
    supernet = space.build()
    assert supernet.input_shape == (None, 96, 96, 3)
    assert max(max(x.choices) for x in mnas.searchable_layers(supernet)
               if hasattr(x, "choices")) == 48
    with pytest.raises(ValueError, match=r"`num_blocks`: expected an int from 1 to 9, "
                                         r"received 10"):
        search_spaces.get("vww", num_blocks=10)
    with pytest.raises(ValueError, match=r"`max_width`: expected an int of at least 4, "
                                         r"received 2"):
        search_spaces.get("vww", max_width=2)
    with pytest.raises(ValueError, match=r"`stages`: expected \(t, c, n, s\) tuples of "
                                         r"positive ints, received \(6, 24, 0, 2\)"):
        search_spaces.vww(stages=((6, 24, 0, 2),))


def test_kws_space_with_a_strided_stem_holds_ds_cnn():
    space = search_spaces.get("kws", max_width=64, num_blocks=4, stem_stride=2)
    searched = arch.build(space.extreme(smallest=False))
    ds_cnn_s = arch.build(arch.get_architecture("ds_cnn_s"))
    assert searched.count_params() == ds_cnn_s.count_params()
    assert [layer.output_shape for layer in searched.layers[1:3]] == [
        layer.output_shape for layer in ds_cnn_s.layers[1:3]]
    assert searched.layers[1].output_shape[1:3] == (25, 5)
    with pytest.raises(ValueError, match="Invalid value for `stem_stride`: expected 1 or 2"):
        search_spaces.get("kws", stem_stride=3)
