"""TFLite Micro's persistent arena for a 32-bit microcontroller, beside the 64-bit host's.

`mnas.estimate` replicates the persistent allocations (the arena's tail) of the host build
that PyPI `tflite-micro` ships, exactly (tested against its recording allocator). A Cortex-M
is a 32-bit target: pointers and `size_t` take 4 bytes instead of 8, so every structure with
pointers is smaller. This module takes the host's list of allocations
(`mnas.hardware.planner.persistent_allocations`) and gives each its 32-bit size, from the structure
layouts of TFLite Micro's headers for a 32-bit ABI (ILP32, 4-byte pointers, 8-byte
alignment of 8-byte members, as arm-none-eabi):

allocation: host bytes -> 32-bit bytes (where the 32-bit size comes from)

- TfLiteEvalTensor, per tensor: 24 -> 12 (common.h: data pointer, dims pointer, type enum);
- NodeAndRegistration, per operator: 64 -> 32 (common.h static-memory TfLiteNode: 6 pointers
  and an int; plus the registration pointer);
- TfLiteTensor, per model input and output: 64 -> 40 (common.h static-memory TfLiteTensor:
  quantization {enum, pointer}, params {float, int32}, data and dims pointers, size_t bytes,
  type and allocation enums, bool);
- TfLiteAffineQuantization: 24 -> 12 (common.h: 2 pointers and an int32);
- input / output tensor pointers, scratch buffer handles (one pointer each): 8 -> 4 each;
- subgraph allocations (2 pointers): 16 -> 8; builtin data allocator (vtable and allocator
  pointers): 16 -> 8;
- kernel OpData: host size less 4 bytes per pointer member (`KERNEL_POINTERS`: conv.h,
  depthwise_conv.h and fully_connected.h hold per-channel multiplier and shift pointers,
  softmax two lookup-table pointers);
- builtin options (builtin_op_data.h: enums and ints), per-channel multipliers and shifts,
  zero points (int32 arrays): unchanged;
- the interpreter's own objects: 452 -> 228, not laid out field by field: taken to halve like
  the structures above (allocators, planner and context hold mostly pointers and size_t).

Structures aligned to 8 bytes on the host for their pointers are aligned to 4.

The 32-bit figure is an estimate (no 32-bit interpreter runs here); the host figure stays
exact against the interpreter. `target_arena_bytes` is what a fit against a microcontroller's
SRAM should use.

Example:

>>> from mnas.hardware import estimate, planner
>>> from mnas.deploy import arena32
>>> info = estimate.read_model_info("kws_ref_model.tflite")  # doctest: +SKIP
>>> arena32.persistent_bytes(info) < planner.persistent_bytes(info)  # doctest: +SKIP
True
"""

from mnas.hardware import estimate, planner, tflite_file

POINTER_BYTES = 4
# Pointer members of each kernel's OpData (TFLite Micro kernels/*.h).
KERNEL_POINTERS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "SOFTMAX": 2}
_FIXED_TAIL_32 = 228
# (host bytes, 32-bit bytes) per kind of allocation, by the label mnas.estimate gives it.
_SIZES_32 = {
    "eval tensors": lambda size: size // 24 * 12,
    "nodes and registrations": lambda size: size // 64 * 32,
    "subgraph allocations": lambda size: size // 16 * 8,
    "builtin data allocator": lambda size: 8,
    "scratch buffer handles": lambda size: size // 8 * 4,
    "input tensor pointers": lambda size: size // 8 * 4,
    "output tensor pointers": lambda size: size // 8 * 4,
    "input tensor": lambda size: 40,
    "output tensor": lambda size: 40,
    "input quantization": lambda size: 12,
    "output quantization": lambda size: 12,
    "interpreter": lambda size: _FIXED_TAIL_32,
}


def allocations(model):
    """The persistent allocations of `model` (a `ModelInfo`) on a 32-bit target.

    Returns:
        A list of (what, host bytes, 32-bit bytes, alignment), in TFLite Micro's order.
    """
    out = []
    for what, size, alignment in planner.persistent_allocations(model):
        if what in _SIZES_32:
            small = _SIZES_32[what](size)
            # Their 8-byte alignment is their pointers' (alignof), 4 bytes on 32-bit.
            alignment = 4 if alignment == 8 else alignment
        elif what.endswith(" op data"):
            small = size - POINTER_BYTES * KERNEL_POINTERS.get(what[:-len(" op data")], 0)
        else:  # builtin options, per-channel arrays, zero points: no pointers
            small = size
        out.append((what, size, small, alignment))
    return out


def persistent_bytes(model):
    """Bytes of the arena tail of `model` (a `ModelInfo`) on a 32-bit target."""
    tail = 0
    for _, _, size, alignment in allocations(model):
        tail = -((-(tail + size)) // alignment) * alignment
    return tail


def target_arena_bytes(model, host_arena_bytes=None):
    """The arena on a 32-bit target: the host's planned head plus the 32-bit tail.

    Args:
        model: A `ModelInfo`, or TFLite flatbuffer bytes or path.
        host_arena_bytes: The arena measured in the host interpreter. Defaults to the
            estimate (`mnas.estimate`), which matches it.

    Returns:
        (target arena bytes, host persistent bytes, target persistent bytes).
    """
    if not isinstance(model, tflite_file.ModelInfo):
        model = estimate.read_model_info(model)
    host_tail = planner.persistent_bytes(model)
    if host_arena_bytes is None:
        host_arena_bytes = estimate.estimate_model_info(model).arena_bytes
    target_tail = persistent_bytes(model)
    return host_arena_bytes - host_tail + target_tail, host_tail, target_tail


def describe(model, host_arena_bytes=None):
    """The host's and the 32-bit target's arena, as a JSON-serialisable dict for reports."""
    target, host_tail, target_tail = target_arena_bytes(model, host_arena_bytes)
    host = target - target_tail + host_tail
    return {"host_arena_bytes": host, "host_persistent_bytes": host_tail,
            "target_arena_bytes": target, "target_persistent_bytes": target_tail,
            "host_source": "TFLite Micro interpreter (64-bit host build of PyPI tflite-micro)",
            "target_source": "host planned part + persistent part from TFLite Micro's "
                             "structure layouts for a 32-bit ABI (mnas.deploy.arena32; an "
                             "estimate)"}
