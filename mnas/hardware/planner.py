"""A replica of TFLite Micro's arena: the greedy memory plan (head) and the persistent tail.

The head is TFLite Micro's greedy memory planner (greedy_memory_planner.cc) over the lifetimes
that micro_allocation_info.cc assigns to activations and scratch buffers. The tail is what the
interpreter allocates for its own life, in the order it does: each allocation is aligned down
from the end of the arena, so order matters. Per-kernel sizes come from `operators.KERNELS`.

A model of several subgraphs is planned in one plan: the subgraphs that IF, WHILE and CALL_ONCE
run are marked in their scopes when those operators run, and the tail holds every subgraph's
tensors, operators and kernel data, and the resource variables' table and buffers.
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
_EXTRA_SUBGRAPH = 8  # Per subgraph after the first.
_RESOURCE_VARIABLES = 16  # MicroResourceVariables
_RESOURCE_VARIABLE = 40  # MicroResourceVariable, one per resource variable


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


# The subgraphs a control flow operator runs, by its options, in the order TFLite Micro plans
# them (micro_allocation_info.cc, MarkSubgraphLifetimesIfNecessary).
_CALLED_SUBGRAPHS = {"IF": ("then_subgraph_index", "else_subgraph_index"),
                     "WHILE": ("cond_subgraph_index", "body_subgraph_index"),
                     "CALL_ONCE": ("init_subgraph_index",)}


def called_subgraphs(op):
    """Indices of the subgraphs that `op` (an `OperatorInfo`) runs: none but for IF, WHILE and
    CALL_ONCE."""
    return [op.options.get(key, 0) for key in _CALLED_SUBGRAPHS.get(op.name, ())]


def _lifetimes(model):
    """Lifetimes of every tensor and scratch buffer, as micro_allocation_info.cc marks them.

    One scope counter runs over the whole model: each operator opens a scope, and so does each
    subgraph a control flow operator runs, whose operators are marked there and then. A subgraph
    run twice keeps the lifetimes of its last run, as in TFLite Micro.

    Returns:
        (lifetimes, scratch, steps): lifetimes[g][t] = [first, last] of tensor t of subgraph g;
        scratch, (bytes, first, last) per scratch buffer in request order (subgraph by
        subgraph, operator by operator); steps, the (first, last) scope of each operator of the
        model's subgraph, its subgraphs' scopes included.
    """
    graphs = model.all_subgraphs()
    lifetimes = [[[-1, -1] for _ in g.tensors] for g in graphs]
    requests = {}  # (subgraph, operator) -> scratch buffer bytes
    for g, graph in enumerate(graphs):
        for i, op in enumerate(graph.operators):
            requests[g, i] = scratch_buffers(graph, op)
    scratch_at = {}
    scope = 0
    steps = []

    def created(life, at):
        if life[0] < 0:
            life[0] = at
        life[1] = at

    def mark(g):
        nonlocal scope
        graph, life = graphs[g], lifetimes[g]
        for t in graph.inputs:
            created(life[t], scope)
        for i, op in enumerate(graph.operators):
            scope += 1
            for t in op.outputs:
                created(life[t], scope)
            start = scope
            for sub in called_subgraphs(op):
                scope += 1
                mark(sub)
            for t in list(op.inputs) + list(op.outputs):
                if t >= 0:
                    life[t][1] = scope
            scratch_at[g, i] = (start, scope)
            if g == 0:
                steps.append((start, scope))
        for t in graph.outputs:
            life[t][1] = scope

    mark(0)
    scratch = [(size, *scratch_at.get(key, (-1, -1)))
               for key, sizes in requests.items() for size in sizes]
    return lifetimes, scratch, steps


def plan_activations(model):
    """Plans the arena head of `model` (a `ModelInfo`) as TFLite Micro does.

    Returns:
        (buffers, offsets, head bytes) where buffers are (size, first, last, tensor index or
        None) in TFLite Micro's order (the tensors of every subgraph, subgraph by subgraph, then
        the scratch buffers), first and last being scopes as micro_allocation_info.cc counts
        them (inputs are alive from scope 0, operator i runs at scope i + 1 in a model without
        control flow). The tensor index is that of a tensor of the model's own subgraph, None
        for a scratch buffer or another subgraph's tensor.
    """
    lifetimes, scratch, _ = _lifetimes(model)
    buffers = []
    for g, (graph, life) in enumerate(zip(model.all_subgraphs(), lifetimes)):
        buffers += [(align(t.nbytes), *life[i], i if g == 0 else None)
                    for i, t in enumerate(graph.tensors)
                    if not t.is_constant and not t.is_variable and t.nbytes]
    buffers += [(align(size), a, b, None) for size, a, b in scratch]
    offsets, head = greedy_plan([b[:3] for b in buffers])
    return buffers, offsets, head


def operator_steps(model):
    """The (first, last) planning scope of each operator of the model's own subgraph: one scope
    for most, more for a control flow operator (the scopes of the subgraphs it runs)."""
    return _lifetimes(model)[2]


def memory_in_use(model):
    """Bytes of the arena head in use while each operator runs: its inputs, outputs and scratch
    buffers and every tensor alive across it (aligned as planned); for a control flow operator,
    the most at any scope of the subgraphs it runs. The plan's size can exceed the largest of
    these where freed space is too fragmented to reuse.

    Returns:
        (bytes per operator, the tensor indices alive at each operator).
    """
    buffers = plan_activations(model)[0]
    in_use, alive = [], []
    for first, last in operator_steps(model):
        best, best_here = -1, []
        for step in range(first, last + 1):
            here = [b for b in buffers if b[1] <= step <= b[2]]
            if sum(b[0] for b in here) > best:
                best, best_here = sum(b[0] for b in here), here
        in_use.append(best)
        alive.append(tuple(b[3] for b in best_here if b[3] is not None))
    return in_use, alive


def _shared_name(graph, tensor):
    """The shared name of the VAR_HANDLE of `graph` that outputs resource `tensor`."""
    for op in graph.operators:
        if op.name == "VAR_HANDLE" and tensor in op.outputs:
            return op.options.get("shared_name", "")
    return None


def resource_variables(model):
    """The resource variables of `model` (a `ModelInfo`): the distinct shared names of its
    VAR_HANDLE operators, in every subgraph, as the interpreter counts them."""
    return sorted({op.options.get("shared_name", "") for g in model.all_subgraphs()
                   for op in g.operators if op.name == "VAR_HANDLE"})


def persistent_allocations(model):
    """The arena tail's allocations for `model` (a `ModelInfo`), in TFLite Micro's order.

    Returns:
        A list of (what, bytes, alignment).
    """
    graphs = model.all_subgraphs()
    ops = [(g, op, KERNELS[op.name]) for g in graphs for op in g.operators]
    allocs = [("interpreter", _FIXED_TAIL, 4)]
    variables = resource_variables(model)
    if variables:  # MicroResourceVariables and its array, made before the interpreter.
        allocs += [("resource variables", _RESOURCE_VARIABLES, ARENA_ALIGNMENT),
                   ("resource variable array", _RESOURCE_VARIABLE * len(variables),
                    ARENA_ALIGNMENT)]
    allocs.append(("builtin data allocator", 16, 8))
    if model.num_subgraphs > 1:  # Measured, not itemised by the recording allocator.
        allocs.append(("per additional subgraph", _EXTRA_SUBGRAPH * (model.num_subgraphs - 1), 8))
    allocs.append(("subgraph allocations", 16 * model.num_subgraphs, 8))
    allocs += [("eval tensors", _EVAL_TENSOR * len(g.tensors), 8) for g in graphs]
    allocs += [("nodes and registrations", _NODE_AND_REGISTRATION * len(g.operators), 8)
               for g in graphs]
    allocs += [(f"{op.name} options", *k.options) for _, op, k in ops if k.options]
    allocs += [(f"{op.name} op data", k.init, ARENA_ALIGNMENT) for _, op, k in ops if k.init]
    assigned = set()
    for g, op, k in ops:
        if op.name == "ASSIGN_VARIABLE":
            # The first assignment to a resource variable, in Prepare's order, allocates its
            # buffer (MicroResourceVariables::Allocate).
            name = _shared_name(g, op.inputs[0])
            if name not in assigned:
                assigned.add(name)
                allocs.append(("resource variable buffer", g.tensors[op.inputs[1]].nbytes,
                               ARENA_ALIGNMENT))
        for size in k.prepare(g, op):  # Bytes, or (bytes, alignment).
            size, alignment = size if isinstance(size, tuple) else (size, ARENA_ALIGNMENT)
            if size:
                allocs.append((f"{op.name} prepare", size, alignment))
    scratch = sum(len(scratch_buffers(g, op)) for g, op, _ in ops)
    for g in graphs:
        # The handles of every scratch buffer, allocated again for each subgraph (the last
        # allocation is the one kept).
        if scratch:
            allocs.append(("scratch buffer handles", 8 * scratch, 8))
        allocs += [("variable tensor", t.nbytes, ARENA_ALIGNMENT)
                   for t in g.tensors if t.is_variable and t.nbytes]
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
