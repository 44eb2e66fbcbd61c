"""A replica of TFLite Micro's arena: the greedy memory plan (head) and the persistent tail.

The head is TFLite Micro's greedy memory planner (greedy_memory_planner.cc) over the lifetimes
that micro_allocation_info.cc assigns to activations and scratch buffers. The tail is what the
interpreter allocates for its own life, in the order it does: each allocation is aligned down
from the end of the arena, so order matters. Per-kernel sizes come from `operators.KERNELS`.
"""

from mnas.hardware.operators import KERNELS

# TFLite Micro aligns every planned buffer (MicroArenaBufferAlignment()).
ARENA_ALIGNMENT = 16

# The interpreter's own objects (allocators, memory planner, context) before the model's.
_FIXED_TAIL = 452
_EVAL_TENSOR = 24  # TfLiteEvalTensor
_NODE_AND_REGISTRATION = 64
_TFLITE_TENSOR = 64  # TfLiteTensor (static-memory build), one per model input and output.
_AFFINE_QUANTIZATION = 24  # TfLiteAffineQuantization


def align(n, alignment=ARENA_ALIGNMENT):
    """`n` rounded up to a multiple of `alignment`."""
    return (n + alignment - 1) // alignment * alignment


def greedy_plan(buffers):
    """TFLite Micro's greedy memory plan.

    Args:
        buffers: (size, first_time_used, last_time_used) per buffer, in the order TFLite Micro
            adds them (tensors by index, then scratch buffers by request).

    Returns:
        (offsets, arena bytes): each buffer's offset and the size of the plan.

    Example:

    >>> greedy_plan([(32, 0, 1), (16, 1, 2), (32, 2, 3)])
    ([0, 32, 0], 48)
    """
    if not buffers:
        return [], 0
    # Online buffers go into the sort array from its tail, then a stable descending sort: among
    # equal sizes, the buffer added last is placed first.
    order = sorted(reversed(range(len(buffers))), key=lambda i: -buffers[i][0])
    offsets = [None] * len(buffers)
    placed = []  # (offset, id), kept in offset order.
    for n, i in enumerate(order):
        size, first, last = buffers[i]
        offset = 0
        if n:
            for other_offset, j in placed:
                _, other_first, other_last = buffers[j]
                if other_first > last or first > other_last:
                    continue
                if other_offset - offset >= size:
                    break
                offset = max(offset, other_offset + buffers[j][0])
        offsets[i] = offset
        at = len(placed)
        for k, (other_offset, _) in enumerate(placed):
            if other_offset > offset:
                at = k
                break
        placed.insert(at, (offset, i))
    return offsets, max(o + b[0] for o, b in zip(offsets, buffers))


def scratch_buffers(model, op):
    """Bytes of each scratch buffer `op`'s Prepare requests from the planner."""
    return KERNELS[op.name].scratch(model, op)


def plan_activations(model):
    """Plans the arena head of `model` (a `ModelInfo`) as TFLite Micro does.

    Returns:
        (buffers, offsets, head bytes) where buffers are (size, first, last, tensor index or
        None for a scratch buffer), first and last being operator steps (inputs are alive from
        step 0, operator i runs at step i + 1... as micro_allocation_info.cc counts).
    """
    n = len(model.tensors)
    first, last = [-1] * n, [-1] * n
    for t in list(model.inputs) + list(model.outputs):
        first[t] = last[t] = 0
    scratch = []
    for step, op in enumerate(model.operators, start=1):
        for t in op.outputs:
            first[t] = last[t] = step
        for t in op.inputs:
            if t >= 0:
                last[t] = step
        for t in op.outputs:
            last[t] = step
        scratch += [(size, step, step, None) for size in scratch_buffers(model, op)]
    for t in model.outputs:
        last[t] = len(model.operators)
    buffers = [(align(t.nbytes), first[i], last[i], i) for i, t in enumerate(model.tensors)
               if not t.is_constant and not t.is_variable and t.nbytes]
    buffers += [(align(size), a, b, None) for size, a, b, _ in scratch]
    offsets, head = greedy_plan([b[:3] for b in buffers])
    return buffers, offsets, head


def memory_in_use(model):
    """Bytes of the arena head in use while each operator runs: its inputs, outputs and scratch
    buffers and every tensor alive across it (aligned as planned). The plan's size can exceed
    the largest of these where freed space is too fragmented to reuse.

    Returns:
        (bytes per operator, the tensor indices alive at each operator).
    """
    buffers = plan_activations(model)[0]
    in_use, alive = [], []
    for step in range(1, len(model.operators) + 1):
        here = [b for b in buffers if b[1] <= step <= b[2]]
        in_use.append(sum(b[0] for b in here))
        alive.append(tuple(b[3] for b in here if b[3] is not None))
    return in_use, alive


def persistent_allocations(model):
    """The arena tail's allocations for `model` (a `ModelInfo`), in TFLite Micro's order.

    Returns:
        A list of (what, bytes, alignment).
    """
    kernels = [KERNELS[op.name] for op in model.operators]
    allocs = [("interpreter", _FIXED_TAIL, 4), ("builtin data allocator", 16, 8),
              ("subgraph allocations", 16 * model.num_subgraphs, 8),
              ("eval tensors", _EVAL_TENSOR * len(model.tensors), 8),
              ("nodes and registrations", _NODE_AND_REGISTRATION * len(model.operators), 8)]
    allocs += [(f"{op.name} options", *k.options)
               for op, k in zip(model.operators, kernels) if k.options]
    allocs += [(f"{op.name} op data", k.init, ARENA_ALIGNMENT)
               for op, k in zip(model.operators, kernels) if k.init]
    for op, k in zip(model.operators, kernels):
        for size in k.prepare(model, op):  # Bytes, or (bytes, alignment).
            size, alignment = size if isinstance(size, tuple) else (size, ARENA_ALIGNMENT)
            if size:
                allocs.append((f"{op.name} prepare", size, alignment))
    scratch = sum(len(scratch_buffers(model, op)) for op in model.operators)
    if scratch:
        allocs.append(("scratch buffer handles", 8 * scratch, 8))
    allocs += [("variable tensor", t.nbytes, ARENA_ALIGNMENT)
               for t in model.tensors if t.is_variable and t.nbytes]
    for what, group in (("input", model.inputs), ("output", model.outputs)):
        allocs.append((f"{what} tensor pointers", 8 * len(group), ARENA_ALIGNMENT))
        for t in group:
            allocs.append((f"{what} tensor", _TFLITE_TENSOR, 8))
            channels = model.tensors[t].channels
            if channels:  # TFLite Micro allocates quantization for quantized tensors only.
                allocs += [(f"{what} quantization", _AFFINE_QUANTIZATION, 8),
                           (f"{what} zero points", 4 + 4 * channels, 4)]
    return allocs


def persistent_bytes(model):
    """Bytes of the arena tail of `model` (a `ModelInfo`), alignment gaps included."""
    tail = 0
    for _, size, alignment in persistent_allocations(model):
        tail = -((-(tail + size)) // alignment) * alignment
    return tail
