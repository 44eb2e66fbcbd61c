"""C sources for TFLite Micro: the op resolver, the arena constant, and that they compile."""

import re
import shutil
import subprocess

import pytest
import tflite

from mnas import errors
from mnas.hardware import estimate, tflm
from mnas.deploy import arena32, csources

from conftest import REFERENCE

MODELS = ["kws_ref_model", "vww_96_int8", "ad01_int8", "pretrainedResnet_quant"]
# Just enough of TFLite Micro's micro_mutable_op_resolver.h for RegisterModelOps: every Add*
# method records its name, and registering more operators than N fails as it does in TFLite
# Micro.
STUB = """\
#pragma once
#include <cstdio>
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
namespace tflite {
template <unsigned int N>
class MicroMutableOpResolver {
 public:
  unsigned int count = 0;
#define MNAS_STUB_ADD(name) \\
  TfLiteStatus name() { if (count >= N) return kTfLiteError; ++count; \\
                        std::printf("%s\\n", #name); return kTfLiteOk; }
%METHODS%
};
}  // namespace tflite
"""
MAIN = """\
#include <cstdio>
#include "model_data.h"
int main() {
  ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) return 1;
  std::printf("arena %d\\n", kTensorArenaSize);
  return 0;
}
"""


def _opcode_names(path):
    """The model's operator set, read with the `tflite` package's generated schema."""
    with open(path, "rb") as f:
        model = tflite.Model.GetRootAsModel(f.read(), 0)
    names = {value: key for key, value in vars(tflite.BuiltinOperator).items()
             if not key.startswith("_")}
    graph = model.Subgraphs(0)
    used = {graph.Operators(i).OpcodeIndex() for i in range(graph.OperatorsLength())}
    return {names[max(model.OperatorCodes(i).BuiltinCode(),
                      model.OperatorCodes(i).DeprecatedBuiltinCode())] for i in used}


def _build_and_run(out_dir):
    stub_dir = out_dir / "stub" / "tensorflow" / "lite" / "micro"
    stub_dir.mkdir(parents=True)
    methods = "\n".join(f"  MNAS_STUB_ADD({m})" for m in sorted(csources.RESOLVER_METHODS.values()))
    (stub_dir / "micro_mutable_op_resolver.h").write_text(STUB.replace("%METHODS%", methods))
    (out_dir / "main.cc").write_text(MAIN)
    for source in ("model_data.cc", "main.cc"):
        subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", source, "-I", "stub"],
                       cwd=out_dir, check=True)
    subprocess.run(["g++", "model_data.o", "main.o", "-o", "main"], cwd=out_dir, check=True)
    return subprocess.run(["./main"], cwd=out_dir, check=True, capture_output=True,
                          text=True).stdout.splitlines()


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs the system C++ compiler")
@pytest.mark.parametrize("name", MODELS[:2])
def test_resolver_registers_exactly_the_model_operators(tmp_path, name):
    path = REFERENCE / f"{name}.tflite"
    csources.write_c_sources(path, tmp_path, labels=None)
    printed = _build_and_run(tmp_path)
    methods = {v: k for k, v in csources.RESOLVER_METHODS.items()}
    registered = [methods[line] for line in printed[:-1]]
    assert len(registered) == len(set(registered))
    assert set(registered) == _opcode_names(path)
    header = (tmp_path / "model_data.h").read_text()
    assert f"constexpr int kModelOpCount = {len(registered)};" in header
    arena = int(printed[-1].split()[1])
    measured = tflm.arena_usage(path).total_bytes
    assert arena % 16 == 0 and measured <= arena < measured + 16


def test_feature_settings_are_written(tmp_path):
    path = REFERENCE / "kws_ref_model.tflite"
    csources.write_c_sources(path, tmp_path, arena_bytes=24272,
                             features={"kind": "mfcc", "frame_samples": 640, "floor_db": -60.0,
                                       "center": False})
    header = (tmp_path / "model_data.h").read_text()
    for line in ('constexpr const char* kFeatureKind = "mfcc";',
                 "constexpr int kFeatureFrameSamples = 640;",
                 "constexpr float kFeatureFloorDb = -60.0f;",
                 "constexpr bool kFeatureCenter = false;"):
        assert line in header
    assert "constexpr int kTensorArenaSize = 24272;" in header


@pytest.mark.parametrize("name", MODELS)
def test_32_bit_persistent_part_is_smaller_and_the_host_part_exact(name):
    path = REFERENCE / f"{name}.tflite"
    info = estimate.read_model_info(path)
    usage = tflm.arena_usage(path)
    target, host_tail, target_tail = arena32.target_arena_bytes(info, usage.total_bytes)
    assert host_tail == usage.persistent_bytes  # the host figure, exact against the interpreter
    assert 0 < target_tail < host_tail
    assert target == usage.total_bytes - host_tail + target_tail
    rows = arena32.allocations(info)
    assert all(small <= host for _, host, small, _ in rows)
    pointer_rows = [r for r in rows if r[0] in ("eval tensors", "nodes and registrations")]
    assert all(small * 2 == host for _, host, small, _ in pointer_rows)


def test_unknown_operator_is_refused(tmp_path):
    data = (REFERENCE / "kws_ref_model.tflite").read_bytes()
    with pytest.raises(errors.InvalidModelFileError):
        csources.write_c_sources(data[:100], tmp_path)
    assert re.match(r"Add[A-Z]", csources.resolver_calls(["MEAN"])[0])
