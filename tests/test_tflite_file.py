"""Reading `.tflite` files: names from the schema, and hostile bytes as one clean error."""

import random

import pytest
from conftest import REFERENCE

from mnas import errors
from mnas.hardware import estimate, tflite_file

KWS = REFERENCE / "kws_ref_model.tflite"


def test_reads_operators_tensors_and_options():
    info = tflite_file.read_model_info(KWS)
    assert [op.name for op in info.operators][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    conv = info.operators[0]
    assert conv.options["stride_w"] == 2 and conv.options["stride_h"] == 2
    assert conv.options["padding"] == 0 and conv.options["fused_activation_function"] == 1
    assert info.tensors[info.inputs[0]].shape == (1, 49, 10, 1)
    assert info.tensors[info.inputs[0]].dtype == "int8"


def test_400_random_mutations_estimate_or_raise_the_packages_error():
    """Every mutated file either estimates or raises an mnas error, never anything else."""
    data = KWS.read_bytes()
    rng = random.Random(0)
    outcomes = {"estimated": 0, "refused": 0}
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(mutated))
            mutated[at] = rng.randrange(256)
        try:
            estimate.estimate_tflite(bytes(mutated))
            outcomes["estimated"] += 1
        except errors.MnasError:
            outcomes["refused"] += 1
    assert sum(outcomes.values()) == 400
    assert outcomes["refused"] > 20  # The mutations do hit the structure.


@pytest.mark.parametrize("keep", [4, 12, 100, 1000, 30000])
def test_truncated(keep):
    with pytest.raises(errors.InvalidModelFileError, match="truncated or corrupt|identifier"):
        tflite_file.parse_model(KWS.read_bytes()[:keep])
