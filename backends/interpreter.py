"""A graph interpreter shared by the backends, written against an array module `xp`.

Each node kind has one handler; elementwise and reduce ops have one implementation each, written
for both numpy and jax.numpy. The numpy backend runs it in float64; the JAX backend overrides
what differs (einsum through opt_einsum, loops as `lax.fori_loop`, dynamic tiles, dtypes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from tlir import EinsumGraph, EinsumNode, LoweringError, TlirError
from tlir.shapes import TILE_RANGE_OPS, infer_shapes, reshape_shape, tile_size
from tlir.spec import CustomVjpSpec, EinsumSpec, FlashSpec, LoopSpec, OpSpec, ReshapeSpec, Term

Array = Any


def align(xp: Any, x: Array, term: Term, target: Term) -> Array:
    """View `x` (labelled `term`) with the axes of `target`: transposed, size-1 where missing."""
    present = [label for label in target if label in term]
    if len(present) != len(term):
        raise LoweringError(f"cannot align {''.join(term)!r} to {''.join(target)!r}")
    x = xp.transpose(x, [term.index(label) for label in present]) if len(term) > 1 else x
    shape = [x.shape[present.index(label)] if label in term else 1 for label in target]
    return xp.reshape(x, shape)


UNARY: dict[str, Callable[[Any, Array], Array]] = {
    "exp": lambda xp, x: xp.exp(x),
    "log": lambda xp, x: xp.log(x),
    "neg": lambda xp, x: -x,
    "abs": lambda xp, x: xp.abs(x),
    "sqrt": lambda xp, x: xp.sqrt(x),
    "rsqrt": lambda xp, x: 1 / xp.sqrt(x),
    "square": lambda xp, x: x * x,
    "tanh": lambda xp, x: xp.tanh(x),
    "sigmoid": lambda xp, x: 1 / (1 + xp.exp(-x)),
    "relu": lambda xp, x: xp.maximum(x, 0),
    "recip": lambda xp, x: 1 / x,
    "inf_to_zero": lambda xp, x: xp.where(xp.isfinite(x), x, xp.zeros_like(x)),
}

BINARY: dict[str, Callable[[Any, Array, Array], Array]] = {
    "add": lambda xp, x, y: x + y,
    "sub": lambda xp, x, y: x - y,
    "mul": lambda xp, x, y: x * y,
    "div": lambda xp, x, y: x / y,
    "maximum": lambda xp, x, y: xp.maximum(x, y),
    "minimum": lambda xp, x, y: xp.minimum(x, y),
    "safe_div": lambda xp, x, y: xp.where(y == 0, xp.zeros_like(x), x / xp.where(y == 0, 1, y)),
}

REDUCE: dict[str, Callable[[Any, Array, tuple[int, ...]], Array]] = {
    "sum": lambda xp, x, axes: xp.sum(x, axis=axes),
    "max": lambda xp, x, axes: xp.max(x, axis=axes),
    "min": lambda xp, x, axes: xp.min(x, axis=axes),
    "mean": lambda xp, x, axes: xp.mean(x, axis=axes),
    "logsumexp": lambda xp, x, axes: _logsumexp(xp, x, axes),
}

# Ops handled by dedicated methods of Interpreter.
SPECIAL = {
    "scale",
    "div_scalar",
    "cast",
    "cast_like",
    "softmax",
    "select",
    "const",
    "iconst",
    "full",
    "rsqrt_size",
    "num_tiles",
    "tile",
    "pad_tiles",
    "attn_mask",
    "put_tile",
    "crop",
    "dropout_keep",
    *TILE_RANGE_OPS,
}


def _logsumexp(xp: Any, x: Array, axes: tuple[int, ...]) -> Array:
    peak = xp.max(x, axis=axes, keepdims=True)
    peak = xp.where(xp.isfinite(peak), peak, xp.zeros_like(peak))
    total = xp.sum(xp.exp(x - peak), axis=axes, keepdims=True)
    return xp.squeeze(xp.log(total) + peak, axis=axes)


def softmax(xp: Any, x: Array, axis: int) -> Array:
    """Softmax whose fully masked (-inf) rows are 0, not NaN."""
    peak = xp.max(x, axis=axis, keepdims=True)
    peak = xp.where(xp.isfinite(peak), peak, xp.zeros_like(peak))
    e = xp.exp(x - peak)
    total = xp.sum(e, axis=axis, keepdims=True)
    return xp.where(total == 0, xp.zeros_like(e), e / xp.where(total == 0, 1, total))


def window_bound(value: Any, sq: int, skv: int) -> int | None:
    """A window side as an int, or None when unbounded. Sides wider than both sequences mean
    the same as no bound; clamping them keeps int32 index arithmetic from overflowing."""
    if not math.isfinite(float(value)):
        return None
    return min(int(value), sq + skv)


def visibility(
    xp: Any,
    sq: int,
    skv: int,
    q_start: Any,
    q_width: int,
    k_start: Any,
    k_width: int,
    left: Any,
    right: Any,
) -> Array:
    """[q_width, k_width] mask: query q_start+r sees key k_start+c iff it exists and is in range.

    Bottom-right aligned, as FlashAttention >= 2.1: the diagonal is key = query + skv - sq.
    """
    query = q_start + xp.arange(q_width)[:, None]
    key = k_start + xp.arange(k_width)[None, :]
    diagonal = query + (skv - sq)
    visible = (key < skv) & (query < sq)
    left, right = window_bound(left, sq, skv), window_bound(right, sq, skv)
    if left is not None:
        visible = visible & (key >= diagonal - left)
    if right is not None:
        visible = visible & (key <= diagonal + right)
    return visible


def tile_range(
    xp: Any, name: str, sq: int, skv: int, index: Any, bq: int, bk: int, left: Any, right: Any
) -> Any:
    """The tile bounds that block skipping visits (see the ops' docs in tlir/ops.py).

    Unbounded sides give plain ints, so loops without a window keep static trip counts.
    """
    offset = skv - sq
    if name in ("first_full_kv_tile", "end_full_kv_tile"):
        return _full_tile_range(xp, name, sq, skv, index, bq, bk, left, right)
    left, right = window_bound(left, sq, skv), window_bound(right, sq, skv)
    if name == "first_kv_tile":
        if left is None:
            return 0
        return xp.maximum(index * bq + offset - left, 0) // bk
    if name == "end_kv_tile":
        if right is None:
            return -(-skv // bk)
        last_row = xp.minimum(index * bq + bq, sq) - 1
        return xp.minimum(last_row + offset + right, skv - 1) // bk + 1
    if name == "first_q_tile":
        if right is None:
            return 0
        return xp.maximum(index * bk - offset - right, 0) // bq
    if left is None:
        return -(-sq // bq)
    last_key = xp.minimum(index * bk + bk, skv) - 1
    return xp.minimum(last_key - offset + left, sq - 1) // bq + 1


def _clamp(xp: Any, x: Any, lo: Any, hi: Any) -> Any:
    if all(isinstance(v, int) for v in (x, lo, hi)):
        return min(max(x, lo), hi)
    return xp.minimum(xp.maximum(x, lo), hi)


def _at_least(xp: Any, x: Any, lo: Any) -> Any:
    if isinstance(x, int) and isinstance(lo, int):
        return max(x, lo)
    return xp.maximum(x, lo)


def _full_tile_range(
    xp: Any, name: str, sq: int, skv: int, index: Any, bq: int, bk: int, left: Any, right: Any
) -> Any:
    """The key tiles that every (real) row of query tile i sees whole: no mask needed there."""
    args = (sq, skv, index, bq, bk, left, right)
    offset = skv - sq
    lo, hi = (tile_range(xp, bound, *args) for bound in ("first_kv_tile", "end_kv_tile"))
    hi = _at_least(xp, hi, lo)  # a tile that sees no key has hi < lo: make it lo
    left_side, right_side = window_bound(left, sq, skv), window_bound(right, sq, skv)
    if name == "first_full_kv_tile":
        if left_side is None:
            return lo  # 0: every key before the diagonal is visible
        last_row = xp.minimum(index * bq + bq, sq) - 1
        return _clamp(xp, -(-(last_row + offset - left_side) // bk), lo, hi)
    first = _full_tile_range(xp, "first_full_kv_tile", *args)
    whole_tiles = skv // bk  # the tail tile, if any, is partly padding
    if right_side is None:
        return _clamp(xp, whole_tiles, first, hi)
    seen = xp.minimum((index * bq + offset + right_side + 1) // bk, whole_tiles)
    return _clamp(xp, seen, first, hi)


def check_count(graph: EinsumGraph, inputs: Sequence[Array]) -> None:
    names = graph.inputs
    if len(inputs) != len(names):
        listed = ", ".join(graph.tensors[t] for t in names)
        raise LoweringError(
            f"the graph takes {len(names)} input(s) ({listed}), found {len(inputs)}"
        )


def check_inputs(graph: EinsumGraph, inputs: Sequence[Array]) -> None:
    """The inputs fit the graph: one per graph input, with shapes that shape inference accepts."""
    check_count(graph, inputs)
    names = graph.inputs
    infer_shapes(graph, {t: tuple(getattr(x, "shape", ())) for t, x in zip(names, inputs)})


class Interpreter:
    """Evaluates graphs node by node over arrays of module `xp`."""

    name = "interpreter"

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    # Graph --------------------------------------------------------------------------------------
    def run_graph(self, graph: EinsumGraph, inputs: Sequence[Array]) -> tuple[Array, ...]:
        names = graph.inputs
        check_count(graph, inputs)
        values: dict[int, Array] = dict(zip(names, inputs))
        for index, node in graph.iter_nodes():
            operands = [values.get(t) for t in node.inputs]
            try:
                results = self.node(node, operands)
            except TlirError as error:
                raise type(error)(f"node {index} {node.spec!r}: {error}") from None
            values.update(zip(node.outputs, results))
        return tuple(values[t] for t in graph.outputs)

    def node(self, node: EinsumNode, operands: list[Array]) -> Sequence[Array]:
        spec = node.parsed
        if isinstance(spec, EinsumSpec):
            return [self.einsum(node, spec, operands)]
        if isinstance(spec, ReshapeSpec):
            shapes = [tuple(x.shape) for x in operands]
            return [self.xp.reshape(operands[0], reshape_shape(spec, shapes, "reshape"))]
        if isinstance(spec, FlashSpec):
            return self.flash(spec, operands)
        if isinstance(spec, LoopSpec):
            assert node.body is not None
            return self.loop(node.body, spec, operands)
        if isinstance(spec, OpSpec):
            return [self.op(spec, operands)]
        if isinstance(spec, CustomVjpSpec):
            return self.custom_vjp(node, operands)
        raise LoweringError(f"{self.name}: no rule for node kind {node.kind!r}")

    # Kinds to specialise ----------------------------------------------------------------------
    def einsum(self, node: EinsumNode, spec: EinsumSpec, operands: list[Array]) -> Array:
        return self.xp.einsum(spec.text, *operands)

    def flash(self, spec: FlashSpec, operands: list[Array]) -> list[Array]:
        raise LoweringError(f"{self.name} cannot run flash nodes")

    def loop(self, body: EinsumGraph, spec: LoopSpec, operands: list[Array]) -> list[Array]:
        lo, hi = int(operands[0]), int(operands[1])
        invariants = operands[2 : len(operands) - spec.carry]
        carried = tuple(operands[len(operands) - spec.carry :])
        for j in range(lo, hi):
            carried = self.run_graph(body, [j, *invariants, *carried])
        return list(carried)

    def custom_vjp(self, node: EinsumNode, operands: list[Array]) -> Sequence[Array]:
        """Without autodiff, a custom_vjp node is its body."""
        assert node.body is not None
        return self.run_graph(node.body, operands)

    def float_dtype(self) -> Any:
        return self.xp.float32

    def cast(self, x: Array, dtype: Any) -> Array:
        return x.astype(dtype)

    def tile(self, x: Array, axis: int, start: Any, size: int) -> Array:
        padded = self.pad(x, axis, size)
        index = [slice(None)] * x.ndim
        index[axis] = slice(int(start), int(start) + size)
        return padded[tuple(index)]

    def dropout_keep(self, key: Any, i: Any, j: Any, rate: float, shape: list[int]) -> Array:
        """Keep mask (True with probability 1 - rate) for tile (i, j); numpy's own generator."""
        import numpy as np

        seed = [int(w) for w in np.asarray(key).ravel()] + [int(i), int(j)]
        return np.random.default_rng(seed).random(shape) >= rate

    def put_tile(self, x: Array, axis: int, start: Any, tile: Array) -> Array:
        result = x.copy()
        index = [slice(None)] * x.ndim
        index[axis] = slice(int(start), int(start) + tile.shape[axis])
        result[tuple(index)] = tile
        return result

    def pad(self, x: Array, axis: int, multiple: int) -> Array:
        extra = -x.shape[axis] % multiple
        if extra == 0:
            return x
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, extra)
        return self.xp.pad(x, widths)

    # Ops -----------------------------------------------------------------------------------------
    def op(self, spec: OpSpec, operands: list[Array]) -> Array:
        if not spec.labelled:
            return self.seed_op(spec, operands)
        assert spec.inputs is not None and spec.output is not None
        xp, name, out = self.xp, spec.op, spec.output
        if name in UNARY:
            return UNARY[name](xp, align(xp, operands[0], spec.inputs[0], out))
        if name in BINARY:
            x, y = (align(xp, a, t, out) for a, t in zip(operands, spec.inputs))
            return BINARY[name](xp, x, y)
        if name in REDUCE:
            term = spec.inputs[0]
            axes = tuple(i for i, label in enumerate(term) if label not in out)
            reduced = REDUCE[name](xp, operands[0], axes)
            kept = tuple(label for label in term if label in out)
            return align(xp, reduced, kept, out)
        return self.special_op(spec, operands)

    def special_op(self, spec: OpSpec, operands: list[Array]) -> Array:
        xp, name, out = self.xp, spec.op, spec.output
        assert spec.inputs is not None and out is not None
        inputs = spec.inputs
        if name == "scale":
            return align(xp, operands[0], inputs[0], out) * spec.args[0]
        if name == "div_scalar":
            return align(xp, operands[0], inputs[0], out) / spec.args[0]
        if name == "cast":
            return self.cast(align(xp, operands[0], inputs[0], out), str(spec.args[0]))
        if name == "cast_like":
            return self.cast(align(xp, operands[0], inputs[0], out), operands[1].dtype)
        if name == "softmax":
            x = align(xp, operands[0], inputs[0], out)
            return softmax(xp, x, out.index(str(spec.args[0])))
        if name == "select":
            cond, a, b = (align(xp, x, t, out) for x, t in zip(operands, inputs))
            return xp.where(cond, a, b)
        if name == "const":
            return xp.asarray(float(spec.args[0]), dtype=self.float_dtype())
        if name == "iconst":
            return int(spec.args[0])
        sizes = {
            label: size
            for x, term in zip(operands, inputs)
            if x is not None
            for label, size in zip(term, getattr(x, "shape", ()))
        }
        if name == "full":
            return xp.full([sizes[label] for label in out], float(spec.args[0]), self.float_dtype())
        if name == "rsqrt_size":
            return 1.0 / math.sqrt(sizes[str(spec.args[0])])
        if name == "num_tiles":
            extent = sizes[str(spec.args[0])]
            return -(-extent // tile_size(int(spec.args[1]), extent))
        if name == "pad_tiles":
            x = align(xp, operands[0], inputs[0], out)
            axis = out.index(str(spec.args[0]))
            return self.pad(x, axis, tile_size(int(spec.args[1]), x.shape[axis]))
        if name == "tile":
            x = align(xp, operands[0], inputs[0], out)
            axis = out.index(str(spec.args[0]))
            size = tile_size(int(spec.args[1]), x.shape[axis])
            return self.tile(x, axis, operands[1] * size, size)
        if name == "put_tile":
            x, tile = (align(xp, a, term, out) for a, term in zip(operands[:2], inputs))
            axis = out.index(str(spec.args[0]))
            return self.put_tile(x, axis, operands[2] * tile.shape[axis], tile)
        if name == "crop":
            x = align(xp, operands[0], inputs[0], out)
            label = str(spec.args[0])
            axis = out.index(label)
            size = operands[1].shape[inputs[1].index(label)]
            return x[(slice(None),) * axis + (slice(0, size),)]
        if name in TILE_RANGE_OPS:
            bq, bk, left, right = spec.args
            sq, skv = (x.shape[-2] for x in operands[:2])
            bq, bk = tile_size(int(bq), sq), tile_size(int(bk), skv)
            return tile_range(xp, name, sq, skv, operands[2], bq, bk, left, right)
        if name == "dropout_keep":
            shape = [sizes[label] for label in out]
            return self.dropout_keep(
                operands[0], operands[3], operands[4], float(spec.args[0]), shape
            )
        if name == "attn_mask":
            bq, bk, left, right = spec.args
            query, key = out
            sq = sizes[query]
            skv = operands[1].shape[inputs[1].index(key)]
            bq, bk = tile_size(int(bq), sq), tile_size(int(bk), skv)
            unbounded = not (math.isfinite(float(left)) or math.isfinite(float(right)))
            if unbounded and sq % bq == 0 and skv % bk == 0:
                # Every query and key of every tile in range exists: a constant mask that the
                # compiler folds away.
                return xp.ones((bq, bk), dtype=bool)
            return visibility(xp, sq, skv, operands[2] * bq, bq, operands[3] * bk, bk, left, right)
        raise LoweringError(f"{self.name}: no implementation of op {name!r}")

    def seed_op(self, spec: OpSpec, operands: list[Array]) -> Array:
        """The seed's unlabelled, rank-polymorphic forms."""
        xp, name = self.xp, spec.op
        if name == "softmax":
            return softmax(xp, operands[0], -1)
        if name == "div_scalar":
            return operands[0] / spec.args[0]
        if name == "scale":
            return operands[0] * spec.args[0]
        if name == "cast":
            return self.cast(operands[0], str(spec.args[0]))
        if name in UNARY:
            return UNARY[name](xp, operands[0])
        if name in BINARY:
            return BINARY[name](xp, operands[0], operands[1])
        if name in REDUCE:
            axes = tuple(int(a) for a in spec.args) or tuple(range(operands[0].ndim))
            return REDUCE[name](xp, operands[0], axes)
        if name == "select":
            return xp.where(*operands)
        if name == "cast_like":
            return self.cast(operands[0], operands[1].dtype)
        if name == "const":
            return xp.asarray(float(spec.args[0]), dtype=self.float_dtype())
        if name == "iconst":
            return int(spec.args[0])
        raise LoweringError(f"{self.name}: op {name!r} needs labelled terms")
