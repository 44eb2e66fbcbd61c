import numpy as np
import pytest
import tf_keras as keras

import mnas
from mnas import arch, derivation, errors, layers, search_spaces


def randomize_batch_norms(model, rng):
    """Trained-like batch norms: non-zero shifts, so dropped channels would show."""
    for layer in model.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                               for w in layer.get_weights()])


def test_derive_and_build_with_inherited_weights_reproduce_the_one_hot_supernet():
    space = search_spaces.get("kws", max_width=32, num_blocks=3)
    supernet = space.build()
    derivation.set_choices(supernet, derivation.random_picks(supernet, np.random.default_rng(3)))
    spec = arch.derive(supernet)
    plain = arch.build(spec, weights_from=supernet)
    assert not mnas.searchable_layers(plain)
    x = np.random.default_rng(0).normal(size=(3, 49, 10, 1)).astype("float32")
    np.testing.assert_allclose(plain(x), supernet(x), atol=1e-5)
    convs = [layer.filters for layer in plain.layers if type(layer) is keras.layers.Conv2D]
    assert convs == [w for w in spec.widths()][:len(convs)]


@pytest.mark.parametrize("name, options, seed", [
    ("vww", {"max_width": 32}, 3),
    ("vww", {"max_width": 24, "num_blocks": 4}, 5),
    ("kws", {"max_width": 32, "num_blocks": 3}, 3),
])
def test_inherited_weights_reproduce_the_one_hot_supernet_with_trained_batch_norms(
        name, options, seed):
    space = search_spaces.get(name, **options)
    supernet = space.build()
    randomize_batch_norms(supernet, np.random.default_rng(1))
    derivation.set_choices(supernet, derivation.random_picks(supernet, np.random.default_rng(seed)))
    spec = arch.derive(supernet)
    plain = arch.build(spec, weights_from=supernet)
    assert not mnas.searchable_layers(plain)
    x = np.random.default_rng(0).normal(size=(3,) + space.input_shape).astype("float32")
    np.testing.assert_allclose(plain(x), supernet(x), atol=1e-5)
    residuals = [e for e in spec.layers if e.get("residual")]
    assert len([x for x in plain.layers if isinstance(x, keras.layers.Add)]) == len(residuals)


def test_vww_derive_writes_one_ib_entry_per_kept_block():
    space = search_spaces.get("vww", max_width=16)
    supernet = space.build()
    for layer in mnas.searchable_layers(supernet):
        layer.alpha.assign(np.eye(layer.num_options, dtype="float32")[-1] * 10)
    depth = [x for x in mnas.searchable_layers(supernet) if isinstance(x, layers.DepthDecision)]
    depth[0].alpha.assign([10.0, -10.0])  # Skip stage1's second block.
    spec = arch.derive(supernet)
    assert spec.backbone == "mobilenet_v2"
    blocks = [(e["source"], e["block"], e["residual"], e["strides"]) for e in spec.layers
              if e["type"] == "ib"]
    assert blocks == [("stage0", 0, False, [1, 1]), ("stage1", 0, False, [2, 2]),
                      ("stage2", 0, False, [2, 2]), ("stage2", 1, True, [1, 1]),
                      ("stage3", 0, False, [2, 2]), ("stage3", 1, True, [1, 1]),
                      ("stage4", 0, False, [1, 1]), ("stage4", 1, True, [1, 1])]
    assert spec.widths() == [16] * 10  # Stem, 8 blocks, head.
    assert arch.ArchSpec.from_json(spec.to_json()) == spec


def test_mobilenet_v2_is_the_keras_applications_model():
    spec = arch.mobilenet_v2(0.35, (96, 96, 3), 2)
    model = arch.build(spec)
    reference = keras.applications.MobileNetV2((96, 96, 3), alpha=0.35, weights=None, classes=2)
    assert model.count_params() == reference.count_params()
    assert [type(x).__name__ for x in model.layers].count("Add") == 10
    named = arch.get_architecture("mobilenet_v2_vww_0.35")
    assert named.input_shape == [50, 50, 1] and named.backbone == "mobilenet_v2"


def test_a_residual_entry_must_keep_the_shape():
    entry = {"type": "ib", "expand": 8, "filters": 6, "strides": [1, 1], "kernel_size": [3, 3],
             "activation": "relu6", "residual": True}
    with pytest.raises(ValueError, match=r"Invalid `ib` entry in architecture spec: a residual "
                                         r"block needs strides \[1, 1\] and as many filters as "
                                         r"its input has channels \(4\), received"):
        arch.build(arch.ArchSpec([8, 8, 4], [entry]))
    model = arch.build(arch.ArchSpec([8, 8, 6], [entry]))
    assert isinstance(model.layers[-1], keras.layers.Add)
    assert isinstance(model.layers[3], keras.layers.ReLU) and model.layers[3].max_value == 6.0


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
    assert model.output_shape[-1] in (2, 4, 12)


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
