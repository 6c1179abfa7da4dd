"""Parallel loops as GPU kernels: a `parallel` loop of the IR becomes one Pallas call.

A loop node marked `parallel=<labels>` (tile-flash marks its query-tile loop `parallel=bh`, or
`parallel=bgr` under grouped-query attention) promises that its iterations are independent,
that iteration i writes only tile i of each carried value, and that no op of its body mixes
values of different <labels>. Such a loop is one kernel launch: a grid of programs, one per
(iteration, label values), each running the loop body once on the blocks of its own tile of its
own (batch, head). The body is the same IR the XLA path runs, with the grid labels dropped from
every term (`bhqd,bhkd->bhqk` becomes `qd,kd->qk`); inner loops stay loops inside the kernel
(`lax.fori_loop`, with dynamic bounds where tiles are skipped). So the scores of a tile live in
registers and shared memory, never in HBM, which is what the XLA loop cannot avoid.

How the body's inputs reach a program:
  block   an input that the body only tiles at the loop index: the block of tile i (BlockSpec);
  whole   any other array: its whole extent for this (batch, head), tiled inside the kernel;
  shape   an input whose value no op reads (only its shape): a stand-in, nothing is loaded;
  static  a Python number (the softmax scale): a constant of the kernel.
Each carried value must be written once, by `put_tile` at the loop index, over a grid that
covers every tile: it becomes an output block.

`lower_parallel_loop` raises `NotAKernel` (a LoweringError) when a loop breaks these rules or
when the Triton lowering cannot take its shapes (every block dimension must be a power of two
from 16 to 256); the JAX backend then runs the loop as XLA loops instead, and says why in
`Compiled.kernels`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
from jax.experimental import pallas as pl

from backends.interpreter import align
from backends.jax import JaxInterpreter
from tlir import EinsumGraph, EinsumNode, LoweringError, TlirError
from tlir.ops import OPS
from tlir.shapes import tile_size
from tlir.spec import EinsumSpec, LoopSpec, OpSpec, Term, term_text
from tlir.walk import bindings

Array = Any

# Triton's tensor shapes must be powers of two, and its matrix products want 16 or more; a
# program holds its tiles in registers and shared memory, which larger ones overflow.
LEAST_BLOCK = 16
LARGEST_BLOCK = 256


# Ops that have no lowering inside a Triton kernel, and why.
OUTSIDE_KERNELS = {
    "dropout_keep": "jax.random does not run inside a Triton kernel (dropout runs as XLA loops)",
}

# A Triton program double-buffers its key and value tiles in shared memory: at most this many
# bytes of them per program (an H100/H200 has 227 KiB per block; the default 128x128 bf16
# tiles with d = 128 and 3 stages, measured, use 192 KiB).
SHARED_MEMORY_BUDGET = 192 * 1024


class NotAKernel(LoweringError):
    """This parallel loop cannot be a Pallas kernel; the message says why."""


# The body without the grid labels ----------------------------------------------------------------
def _strip(term: Term, labels: str) -> str:
    return "".join(label for label in term if label not in labels)


def _stripped_spec(node: EinsumNode, labels: str, where: str) -> str:
    spec = node.parsed
    if isinstance(spec, LoopSpec):
        return node.spec
    if isinstance(spec, EinsumSpec) and not spec.has_ellipsis:
        terms = spec.inputs
        reads = [True] * len(terms)
        head = ""
    elif isinstance(spec, OpSpec) and spec.labelled:
        assert spec.inputs is not None
        terms = spec.inputs
        definition = OPS[spec.op]
        reads = [definition.reads_value(p) for p in range(len(terms))]
        head = spec.text.split(":", 1)[0] + ":"
        if any(str(arg) in labels for arg in spec.args if isinstance(arg, str)):
            raise NotAKernel(f"{where}{node.spec!r} names a parallel label in its arguments")
    else:
        raise NotAKernel(f"{where}a {node.kind} node {node.spec!r} cannot run inside a kernel")
    if isinstance(spec, OpSpec) and spec.op in OUTSIDE_KERNELS:
        raise NotAKernel(f"{where}{node.spec!r}: {OUTSIDE_KERNELS[spec.op]}")
    output = spec.output
    assert output is not None
    for term, read in zip(terms, reads):
        mixed = [label for label in term if label in labels and label not in output]
        if read and mixed:
            raise NotAKernel(
                f"{where}{node.spec!r} reduces over parallel label {mixed[0]!r}: its programs "
                "would need each other's values"
            )
    inputs = ",".join(_strip(term, labels) for term in terms)
    return f"{head}{inputs}->{_strip(output, labels)}"


def kernel_body(body: EinsumGraph, labels: str, where: str = "") -> EinsumGraph:
    """`body` as one program of the grid sees it: every term without `labels`."""
    stripped = EinsumGraph()
    for name in body.tensors:
        stripped.add_tensor(name)
    for index, node in enumerate(body.nodes):
        at = f"{where}node {index} "
        inner = kernel_body(node.body, labels, at + "body: ") if node.body is not None else None
        if node.grad_body is not None:
            raise NotAKernel(f"{at}{node.spec!r}: a custom_vjp node cannot run inside a kernel")
        stripped.add_node(
            EinsumNode(
                _stripped_spec(node, labels, at),
                node.inputs,
                node.outputs,
                kind=node.kind,
                attrs=node.attrs,
                body=inner,
            )
        )
    for t in body.inputs:
        stripped.add_input(t)
    for t in body.outputs:
        stripped.add_output(t)
    return stripped


# How each body input reaches a program ----------------------------------------------------------
@dataclass(frozen=True)
class Use:
    node: EinsumNode
    position: int
    term: Term | None  # the operand's term, None for a loop's operands
    top_level: bool


def _uses(graph: EinsumGraph, tensor: int, top_level: bool = True) -> list[Use]:
    found = []
    for node in graph.nodes:
        for position, t in enumerate(node.inputs):
            if t != tensor:
                continue
            spec = node.parsed
            if isinstance(spec, LoopSpec) and position >= 2:
                # Passed into an inner loop: what counts is how its body uses it.
                assert node.body is not None
                for operand, parameter in bindings(node):
                    if operand == tensor:
                        found += _uses(node.body, parameter, False)
                continue
            term = spec.inputs[position] if isinstance(spec, (EinsumSpec, OpSpec)) else None
            found.append(Use(node, position, term, top_level))
    return found


def _reads_value(use: Use) -> bool:
    spec = use.node.parsed
    return not isinstance(spec, OpSpec) or OPS[spec.op].reads_value(use.position)


def _term_of(name: str, uses: list[Use]) -> Term:
    terms = {use.term for use in uses if use.term is not None}
    if len(terms) != 1:
        found = ", ".join(sorted(repr(term_text(t)) for t in terms)) or "none"
        raise NotAKernel(f"input {name!r} needs one labelled term in the body, found {found}")
    return terms.pop()


@dataclass(frozen=True)
class Operand:
    """One body input of the kernel: how it arrives, and its labels."""

    kind: str  # "index", "block", "whole", "shape", "static", "output"
    term: Term = ()
    label: str = ""  # the tiled label of a block or an output
    size: int = 0  # its tile size
    name: str = ""  # the body's name for it
    tiles: tuple[tuple[str, int], ...] = ()  # (label, tile size) of a whole input's tile ops


class ShapeOnly:
    """Stands in for an input whose value no op of the body reads."""

    def __init__(self, shape: Sequence[int], dtype: Any) -> None:
        self.shape = tuple(shape)
        self.dtype = dtype
        self.ndim = len(self.shape)


class Block:
    """A ref holding one tile of an input: `tile` at the loop index loads all of it."""

    def __init__(self, ref: Any) -> None:
        self.ref, self.shape, self.dtype = ref, tuple(ref.shape), ref.dtype
        self.ndim = len(self.shape)


class Whole(Block):
    """A ref holding an input's whole extent for this program: `tile` loads a slice."""


class Output(Block):
    """A ref of one output block: `put_tile` at the loop index stores into it."""


def _is_static(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def classify(node: EinsumNode, operands: Sequence[Any]) -> list[Operand]:
    """How each body input of a parallel loop reaches the kernel (see the module doc)."""
    body = node.body
    spec = node.parsed
    assert body is not None and isinstance(spec, LoopSpec)
    inputs = body.inputs
    n_carry = spec.carry
    index = inputs[0]
    result = [Operand("index")]
    for position, tensor in enumerate(inputs[1 : len(inputs) - n_carry], start=1):
        name = body.tensors[tensor]
        value = operands[position + 1]
        uses = _uses(body, tensor)
        if _is_static(value):
            result.append(Operand("static", name=name))
            continue
        if getattr(value, "ndim", 0) == 0:
            raise NotAKernel(f"input {name!r} is a traced scalar; a kernel takes arrays")
        term = _term_of(name, uses)
        if len(term) != value.ndim:
            raise NotAKernel(
                f"input {name!r} is labelled {term_text(term)!r} but has {value.ndim} axes"
            )
        reads = [use for use in uses if _reads_value(use)]
        if not reads:
            result.append(Operand("shape", term, name=name))
        elif all(_tiles_at(use, index) for use in uses):
            label, size = _tile_args(uses[0])
            if any(_tile_args(use) != (label, size) for use in uses):
                raise NotAKernel(f"input {name!r} is tiled in two ways at the loop index")
            result.append(Operand("block", term, label, size, name))
        elif all(_is_tile(use) for use in reads):
            tiles = {_tile_args(use) for use in reads}
            if len({label for label, _ in tiles}) != len(tiles):
                raise NotAKernel(f"input {name!r} is tiled with two sizes along one axis")
            result.append(Operand("whole", term, name=name, tiles=tuple(sorted(tiles))))
        else:
            culprit = next(use for use in reads if not _is_tile(use))
            raise NotAKernel(
                f"input {name!r} is read whole by {culprit.node.spec!r}: inside a kernel an "
                "input that is not tiled at the loop index can only be read tile by tile"
            )
    outputs = body.outputs
    writers = {t: n for n in body.nodes for t in n.outputs}
    for r, tensor in enumerate(inputs[len(inputs) - n_carry :]):
        name = body.tensors[tensor]
        writer = writers.get(outputs[r])
        uses = _uses(body, tensor)
        if (
            writer is None
            or not isinstance(writer.parsed, OpSpec)
            or writer.parsed.op != "put_tile"
            or writer.inputs[0] != tensor
            or writer.inputs[2] != index
            or len(uses) != 1
        ):
            raise NotAKernel(
                f"carried value {name!r} must be written once, by put_tile at the loop index, "
                "and read by nothing else"
            )
        assert writer.parsed.output is not None
        label, size = _tile_args(Use(writer, 0, None, True))
        result.append(Operand("output", writer.parsed.output, label, size, name))
    return result


def _is_tile(use: Use) -> bool:
    spec = use.node.parsed
    return (
        isinstance(spec, OpSpec)
        and spec.op == "tile"
        and use.position == 0
        and spec.inputs is not None
        and spec.inputs[0] == spec.output
    )


def _tiles_at(use: Use, index: int) -> bool:
    """A `tile` of the loop body itself (not an inner loop's) at the loop index."""
    return use.top_level and _is_tile(use) and use.node.inputs[1] == index


def _tile_args(use: Use) -> tuple[str, int]:
    spec = use.node.parsed
    assert isinstance(spec, OpSpec)
    return str(spec.args[0]), int(spec.args[1])


# The kernel ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelOptions:
    """How a parallel loop becomes a kernel: Triton's knobs, or Pallas' interpreter (any device)."""

    interpret: bool = False
    num_warps: int | None = None  # None: 4 for score tiles of at most 128x64, else 8
    num_stages: int = 3  # measured on an H200: 3 beat 2 by 10-15% with 128x128 tiles
    # The grid's order (see _Grid); None: outermost when iterations differ in work (causal).
    iterations_outermost: bool | None = None

    def __post_init__(self) -> None:
        warps = self.num_warps
        if warps is not None and (not isinstance(warps, int) or warps not in (1, 2, 4, 8, 16)):
            raise LoweringError(
                f"KernelOptions: num_warps must be 1, 2, 4, 8 or 16, found {warps!r}"
            )
        if not isinstance(self.num_stages, int) or self.num_stages < 1:
            raise LoweringError(
                f"KernelOptions: num_stages must be an integer >= 1, found {self.num_stages!r}"
            )


class KernelInterpreter(JaxInterpreter):
    """Runs a stripped loop body inside a Pallas kernel: tiles come from refs."""

    name = "kernel"

    def einsum(self, node: EinsumNode, spec: EinsumSpec, operands: list[Array]) -> Array:
        accumulate = node.attr("acc")
        preferred = jnp.dtype(accumulate) if accumulate is not None else None
        return jnp.einsum(spec.text, *operands, preferred_element_type=preferred)

    def special_op(self, spec: OpSpec, operands: list[Array]) -> Array:
        assert spec.inputs is not None and spec.output is not None
        if spec.op == "tile" and isinstance(operands[0], Block):
            source, term = operands[0], spec.inputs[0]
            if isinstance(source, Whole):
                axis = term.index(str(spec.args[0]))
                size = tile_size(int(spec.args[1]), source.shape[axis])
                index: list[Any] = [slice(None)] * source.ndim
                index[axis] = pl.ds(operands[1] * size, size)
                loaded = source.ref[tuple(index)]
            else:
                loaded = source.ref[...]
            return align(self.xp, loaded, term, spec.output)
        if spec.op == "put_tile" and isinstance(operands[0], Output):
            target = operands[0]
            target.ref[...] = align(self.xp, operands[1], spec.inputs[1], spec.output).astype(
                target.dtype
            )
            return target
        return super().special_op(spec, operands)


def _grid_sizes(plan: list[Operand], operands: Sequence[Any], labels: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for operand, x in zip(plan[1:], operands[2:]):
        for label, n in zip(operand.term, getattr(x, "shape", ())):
            if label in labels and sizes.setdefault(label, n) != n:
                raise NotAKernel(f"label {label!r} has sizes {sizes[label]} and {n}")
    return sizes


def _stages(wanted: int, staged_bytes: int) -> int:
    """Pipeline stages whose key and value tiles fit SHARED_MEMORY_BUDGET; fewer than 2 (no
    double-buffering) is refused rather than tried, as untested."""
    fitting = SHARED_MEMORY_BUDGET // max(staged_bytes, 1)
    if fitting < 2:
        raise NotAKernel(
            f"the tiles of K and V take {staged_bytes // 1024} KiB per stage: two stages would "
            f"pass the {SHARED_MEMORY_BUDGET // 1024} KiB of shared memory a program may use"
        )
    return min(wanted, fitting)


def _fits_triton(dims: dict[str, int], what: str) -> None:
    for label, n in dims.items():
        if not LEAST_BLOCK <= n <= LARGEST_BLOCK or n & (n - 1):
            raise NotAKernel(
                f"{what}: axis {label!r} of {n} is not a power of two from {LEAST_BLOCK} to "
                f"{LARGEST_BLOCK}, as Triton's blocks need"
            )


@dataclass(frozen=True)
class _Grid:
    """The launch grid: the loop's iterations and one axis per parallel label.

    Iterations run last first: under a causal mask they see the most key tiles, and starting
    the longest programs first leaves the GPU less idle at the end. `iterations_outermost`
    makes the iterations the slowest grid axis, so every head's longest program starts before
    any head's shorter one; otherwise they are the fastest, so programs that run together
    share their head's K and V in the L2 cache. (Pallas on Triton launches grid axis 0
    fastest, so "outermost" puts the iterations last in the grid tuple.)
    """

    steps: int
    label_sizes: tuple[int, ...]
    iterations_outermost: bool

    @property
    def shape(self) -> tuple[int, ...]:
        if self.iterations_outermost:
            return (*self.label_sizes, self.steps)
        return (self.steps, *self.label_sizes)

    def split(self, ids: Sequence[Any]) -> tuple[Any, tuple[Any, ...]]:
        """(iteration, label ids) of one program's grid ids."""
        if self.iterations_outermost:
            program, labels = ids[-1], tuple(ids[:-1])
        else:
            program, labels = ids[0], tuple(ids[1:])
        return self.steps - 1 - program, labels


def _work_varies(body: EinsumGraph, operands: Sequence[Any], lo: int, hi: int) -> bool:
    """Whether the first and the last iteration run inner loops of different trip counts (a
    causal mask: later query tiles see more key tiles). The bounds are evaluated in numpy from
    the shapes alone; bounds that need values count as not varying."""
    import networkx as nx
    import numpy as np

    from backends.interpreter import Interpreter

    loops = [node for node in body.nodes if isinstance(node.parsed, LoopSpec)]
    pairs = [(node.inputs[0], node.inputs[1]) for node in loops]
    bounds = list(dict.fromkeys(t for pair in pairs for t in pair))  # runs share their ends
    if not bounds or hi - lo < 2:
        return False
    flow = body.to_networkx()
    needed = set().union(*(nx.ancestors(flow, ("tensor", t)) for t in bounds))
    sub = EinsumGraph()
    for name in body.tensors:
        sub.add_tensor(name)
    for j, node in enumerate(body.nodes):
        if ("node", j) in needed:
            sub.add_node(node)
    for t in body.inputs:
        sub.add_input(t)
    for t in bounds:
        sub.add_output(t)
    stand_ins = [ShapeOnly(getattr(x, "shape", ()), getattr(x, "dtype", None)) for x in operands]
    trips = []
    for i in (lo, hi - 1):
        try:
            values = Interpreter(np).run_graph(sub, [i, *stand_ins[2:]])
        except (TlirError, TypeError, ValueError, AttributeError, IndexError):
            return False  # a bound that needs values, not shapes: assume even work
        value_of = dict(zip(bounds, values))
        trips.append([int(value_of[end]) - int(value_of[start]) for start, end in pairs])
    return trips[0] != trips[1]


def _block(
    operand: Operand, shape: Sequence[int], labels: str, first: int, grid: _Grid
) -> tuple[tuple[int | None, ...], Any]:
    """(block shape, index map) of one kernel input or output."""
    block: list[int | None] = []
    for label, n in zip(operand.term, shape):
        if label in labels:
            block.append(None)  # one (batch, head) per program: squeezed
        elif label == operand.label:
            block.append(tile_size(operand.size, n))
        else:
            block.append(n)

    def index_map(*ids: Any) -> tuple[Any, ...]:
        iteration, label_ids = grid.split(ids)
        return tuple(
            label_ids[labels.index(label)]
            if label in labels
            else (first + iteration if label == operand.label else 0)
            for label in operand.term
        )

    return tuple(block), index_map


def lower_parallel_loop(
    node: EinsumNode, operands: Sequence[Any], options: KernelOptions
) -> list[Array]:
    """The loop as one `pallas_call`; raises NotAKernel when it cannot be one."""
    import jax

    labels = node.attr("parallel") or ""
    spec = node.parsed
    assert isinstance(spec, LoopSpec) and node.body is not None
    lo, hi = operands[0], operands[1]
    if not (isinstance(lo, int) and isinstance(hi, int)):
        raise NotAKernel("its bounds depend on an enclosing loop")
    body = kernel_body(node.body, labels)  # first: it refuses ops that have no kernel form
    plan = classify(node, operands)
    sizes = _grid_sizes(plan, operands, labels)
    missing = [label for label in labels if label not in sizes]
    if missing:
        raise NotAKernel(f"parallel label {missing[0]!r} is on none of its operands")
    outermost = options.iterations_outermost
    if outermost is None:
        outermost = _work_varies(node.body, operands, lo, hi)
    grid = _Grid(hi - lo, tuple(sizes[label] for label in labels), outermost)

    in_specs, arrays, out_specs, out_shapes = [], [], [], []
    rows, key_tile, staged_bytes = 0, 1, 0
    for operand, x in zip(plan[1:], operands[2:]):
        if operand.kind not in ("block", "whole", "output"):
            continue
        shape = tuple(x.shape)
        block, index_map = _block(operand, shape, labels, lo, grid)
        dims = {label: n for label, n in zip(operand.term, block) if n is not None}
        what = f"{operand.name} ({operand.kind} {term_text(operand.term)})"
        if operand.kind == "whole":
            # What the program loads at a time: one tile along each tiled axis.
            for label, size in operand.tiles:
                size = tile_size(size, dims[label])
                if dims[label] % size:
                    raise NotAKernel(f"{what}: {dims[label]} is not a multiple of tile {size}")
                dims[label] = size
                key_tile = max(key_tile, size)
            staged_bytes += math.prod(dims.values()) * x.dtype.itemsize
        if operand.kind in ("block", "output"):
            # Every program's block lies inside the array: no partial block, whose padding
            # Triton would leave undefined where XLA pads with zeros.
            extent = shape[operand.term.index(operand.label)]
            size = dims[operand.label]
            if extent % size or (lo + grid.steps) * size > extent:
                raise NotAKernel(f"{what}: the loop's tiles of {size} do not cover {extent} whole")
        if operand.kind == "output":
            axis = operand.term.index(operand.label)
            if lo != 0 or grid.steps * dims[operand.label] != shape[axis]:
                raise NotAKernel(f"{what}: the loop does not write every tile")
            out_specs.append(pl.BlockSpec(block, index_map))
            out_shapes.append(jax.ShapeDtypeStruct(shape, x.dtype))
            rows = max(rows, dims[operand.label])
        else:
            in_specs.append(pl.BlockSpec(block, index_map))
            arrays.append(x)
        if not options.interpret:
            _fits_triton(dims, what)

    interpreter = KernelInterpreter()

    def kernel(*refs: Any) -> None:
        ins, outs = iter(refs[: len(arrays)]), iter(refs[len(arrays) :])
        values: list[Any] = []
        for operand, x in zip(plan, [None, *operands[2:]]):
            if operand.kind == "index":
                ids = [pl.program_id(axis) for axis in range(len(grid.shape))]
                values.append(lo + grid.split(ids)[0])
            elif operand.kind == "static":
                values.append(x)
            elif operand.kind == "shape":
                shape = [n for label, n in zip(operand.term, x.shape) if label not in labels]
                values.append(ShapeOnly(shape, x.dtype))
            elif operand.kind == "block":
                values.append(Block(next(ins)))
            elif operand.kind == "whole":
                values.append(Whole(next(ins)))
            else:
                values.append(Output(next(outs)))
        interpreter.run_graph(body, values)

    compiler_params = None
    if not options.interpret:
        from jax.experimental.pallas import triton as plgpu

        # Measured on an H200 (docs/benchmarks.md): 128x64 score tiles ran fastest with 4 warps,
        # 128x128 ones with 8.
        warps = options.num_warps or (4 if rows * key_tile <= 128 * 64 else 8)
        stages = _stages(options.num_stages, staged_bytes)
        compiler_params = plgpu.CompilerParams(num_warps=warps, num_stages=stages)
    call = pl.pallas_call(
        kernel,
        grid=grid.shape,
        in_specs=in_specs,
        out_specs=out_specs,
        out_shape=out_shapes,
        interpret=options.interpret,
        compiler_params=compiler_params,
        name="tlir_parallel_loop",
    )
    return list(call(*arrays))
