import numpy as np
import pytest
import tf_keras as keras

import mnas
from mnas import arch, errors, search_spaces


def test_derive_and_build_with_inherited_weights_reproduce_the_one_hot_supernet():
    space = search_spaces.get("kws", max_width=32, num_blocks=3)
    supernet = space.build()
    arch.random_one_hot(supernet, np.random.default_rng(3))
    spec = arch.derive(supernet)
    plain = arch.build(spec, weights_from=supernet)
    assert not mnas.searchable_layers(plain)
    x = np.random.default_rng(0).normal(size=(3, 49, 10, 1)).astype("float32")
    np.testing.assert_allclose(plain(x), supernet(x), atol=1e-5)
    convs = [layer.filters for layer in plain.layers if type(layer) is keras.layers.Conv2D]
    assert convs == [w for w in spec.widths()][:len(convs)]


def test_skipped_blocks_vanish_or_become_pooling():
    space = search_spaces.get("kws", max_width=16, num_blocks=2)
    supernet = space.build()
    for layer in mnas.searchable_layers(supernet):
        if isinstance(layer, mnas.SearchableSkip):
            layer.alpha.assign([5.0, -5.0])
    spec = arch.derive(supernet)
    assert [e["type"] for e in spec.layers] == ["conv", "pool", "keras", "keras", "keras",
                                                 "keras"]
    assert spec.layers[1]["pool_size"] == [2, 2]


def test_spec_save_load_round_trip(tmp_path):
    spec = arch.get_architecture("micronet_ad_s")
    path = tmp_path / "arch.json"
    spec.save(path)
    loaded = arch.ArchSpec.load(path)
    assert loaded == spec
    assert arch.build(str(path)).count_params() == arch.build(spec).count_params()


@pytest.mark.parametrize("name", sorted(arch.NAMED_ARCHITECTURES))
def test_named_architectures_build(name):
    model = arch.build(arch.get_architecture(name))
    assert model.output_shape[-1] in (4, 12)


def test_table5_widths():
    spec = arch.get_architecture("micronet_kws_m")
    assert spec.widths() == [140, 140, 140, 140, 112, 196, 12]


def test_errors_are_named(tmp_path):
    with pytest.raises(errors.UnknownNameError, match=r"Invalid value for `arch`: expected one "
                                                      r"of .*received 'resnet'"):
        arch.get_architecture("resnet")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match=r"Invalid architecture spec .*bad.json.*not JSON"):
        arch.ArchSpec.load(bad)
    with pytest.raises(ValueError, match=r"expected a `type` in .*received \{'type': 'lstm'\}"):
        arch.ArchSpec.from_json({"input_shape": [4], "layers": [{"type": "lstm"}]})
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, name="b")(inputs)
    branched = keras.Model(inputs, keras.layers.Add()([a, b]))
    with pytest.raises(errors.UnsupportedLayerError, match=r"layer 'b' does not follow"):
        arch.derive(branched)
