"""Shape inference: numpy's einsum rules, reshape sizes, flash shapes, ops and loops.

`infer_shapes(graph, {tensor: shape})` returns a shape for every tensor the graph computes. A
mismatch raises a `GraphError` that names the node, the label and both sizes.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence

from tlir import ops
from tlir.errors import GraphError, TlirError
from tlir.graph import EinsumGraph, EinsumNode
from tlir.spec import (
    ELLIPSIS,
    CustomVjpSpec,
    EinsumSpec,
    FlashSpec,
    LoopSpec,
    OpSpec,
    ReshapeSpec,
    Term,
    term_text,
)

Shape = tuple[int, ...]

# Ops that write a scalar computed from their operands' shapes (or from nothing).
TILE_RANGE_OPS = frozenset(
    {
        "first_kv_tile",
        "end_kv_tile",
        "first_q_tile",
        "end_q_tile",
        "first_full_kv_tile",
        "end_full_kv_tile",
    }
)
SCALAR_OPS = frozenset({"rsqrt_size", "num_tiles", "const", "iconst"}) | TILE_RANGE_OPS


def tile_size(size: int, extent: int) -> int:
    """A tile is never larger than the axis it tiles (so short sequences are not padded up to
    a whole tile); size 0 means the whole axis."""
    return max(1, min(size, extent) if size else extent)


class _Sizes:
    """Label sizes of one node, with numpy's size-1 broadcasting where `broadcast` is set."""

    def __init__(self, where: str, broadcast: bool) -> None:
        self.where = where
        self.broadcast = broadcast
        self.sizes: dict[str, int] = {}
        self.origin: dict[str, str] = {}

    def bind(self, label: str, size: int, origin: str) -> None:
        old = self.sizes.get(label)
        if old is None or old == size:
            self.sizes[label] = size
            self.origin.setdefault(label, origin)
            return
        if self.broadcast and (old == 1 or size == 1):
            if old == 1:
                self.sizes[label], self.origin[label] = size, origin
            return
        raise GraphError(
            f"{self.where}: label {label!r} has size {old} in {self.origin[label]} "
            f"but {size} in {origin}"
        )


def _broadcast(shapes: Sequence[Shape], where: str) -> Shape:
    ndim = max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            raise GraphError(f"{where}: '...' dimensions {list(shapes)} do not broadcast")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def _split_term(term: Term, shape: Shape, where: str) -> tuple[dict[int, str], Shape]:
    """Positions of the labels in `shape`, and the dimensions that '...' covers."""
    if ELLIPSIS not in term:
        if len(term) != len(shape):
            raise GraphError(
                f"{where}: term {''.join(term)!r} has {len(term)} labels but the operand has "
                f"rank {len(shape)} (shape {list(shape)})"
            )
        return dict(enumerate(term)), ()
    n_labels = len(term) - 1
    n_ellipsis = len(shape) - n_labels
    if n_ellipsis < 0:
        raise GraphError(
            f"{where}: term {''.join(term)!r} needs rank >= {n_labels}, found shape {list(shape)}"
        )
    at = term.index(ELLIPSIS)
    positions = {i: label for i, label in enumerate(term[:at])}
    positions.update({at + n_ellipsis + i: label for i, label in enumerate(term[at + 1 :])})
    return positions, tuple(shape[at : at + n_ellipsis])


def einsum_shape(spec: EinsumSpec, shapes: Sequence[Shape], where: str) -> Shape:
    sizes = _Sizes(where, broadcast=True)
    ellipses = []
    for i, (term, shape) in enumerate(zip(spec.inputs, shapes)):
        positions, ellipsis_dims = _split_term(term, shape, where)
        ellipses.append(ellipsis_dims)
        within: dict[str, int] = {}
        for axis, label in positions.items():
            if label in within and within[label] != shape[axis]:
                raise GraphError(
                    f"{where}: label {label!r} repeats in operand {i} with sizes "
                    f"{within[label]} and {shape[axis]} (a diagonal needs equal sizes)"
                )
            within[label] = shape[axis]
            sizes.bind(label, shape[axis], f"operand {i}")
    broadcast = _broadcast(ellipses, where)
    if broadcast and ELLIPSIS not in spec.output:
        raise GraphError(
            f"{where}: '...' covers dimensions {list(broadcast)} but the output has no '...'"
        )
    result: list[int] = []
    for label in spec.output:
        result.extend(broadcast if label == ELLIPSIS else (sizes.sizes[label],))
    return tuple(result)


def reshape_shape(spec: ReshapeSpec, shapes: Sequence[Shape], where: str) -> Shape:
    sizes = _Sizes(where, broadcast=False)
    source_shape = shapes[0]
    if len(spec.source) != len(source_shape):
        raise GraphError(
            f"{where}: the source has {len(spec.source)} axes but the operand has shape "
            f"{list(source_shape)}"
        )
    for axis, size in zip(spec.source, source_shape):
        if axis.label is None:
            if axis.size != size:
                raise GraphError(f"{where}: fixed source axis {axis.size} found size {size}")
        else:
            sizes.bind(axis.label, size, "operand 0")
    for i, (donor, shape) in enumerate(zip(spec.donors, shapes[1:]), start=1):
        positions, _ = _split_term(donor, shape, where)
        for position, label in positions.items():
            sizes.bind(label, shape[position], f"operand {i}")
    total = math.prod(source_shape)
    known = [
        axis.size if axis.label is None else sizes.sizes.get(axis.label) for axis in spec.target
    ]
    product = math.prod(k for k in known if k is not None)
    if None in known:
        if product == 0:
            raise GraphError(
                f"{where}: cannot infer the new axis of an empty tensor (shape "
                f"{list(source_shape)}): every size would fit"
            )
        if total % product:
            raise GraphError(
                f"{where}: cannot infer the new axis: {total} elements are not a multiple of "
                f"{product} (shape {list(source_shape)})"
            )
        known[known.index(None)] = total // product
    elif product != total:
        raise GraphError(
            f"{where}: the target has {product} elements but the source shape "
            f"{list(source_shape)} has {total}"
        )
    return tuple(int(k) for k in known)  # type: ignore[arg-type]


def flash_shapes(spec: FlashSpec, shapes: Sequence[Shape], where: str) -> list[Shape]:
    sizes = _Sizes(where, broadcast=False)
    for role, term, shape in zip("qkv", (spec.q, spec.k, spec.v), shapes):
        if len(shape) != len(term):
            raise GraphError(
                f"{where}: operand {role} ({term_text(term)}) must have rank {len(term)}, "
                f"found {list(shape)}"
            )
        for label, size in zip(term, shape):
            sizes.bind(label, size, f"operand {role}")
    key_at = spec.operand("dropout_key")
    if key_at is not None and tuple(shapes[key_at]) not in ((), (2,)):
        raise GraphError(
            f"{where}: the PRNG key operand must be a key (shape []) or uint32[2] key data, "
            f"found shape {list(shapes[key_at])}"
        )
    roles, size = spec.roles, sizes.sizes
    if size[roles.head_dim] < 1:
        raise GraphError(
            f"{where}: the head dim {roles.head_dim!r} must be >= 1, found {size[roles.head_dim]}"
        )
    sq, skv = size[roles.query], size[roles.key]
    if sq < 1 or skv < 1:
        raise GraphError(f"{where}: sequence lengths must be >= 1, found Sq={sq}, Skv={skv}")
    if spec.grouped:
        assert roles.query_heads is not None and roles.kv_heads is not None
        h, g = size[roles.query_heads], size[roles.kv_heads]
        if g == 0 or h % g:
            raise GraphError(
                f"{where}: query heads {roles.query_heads!r}={h} must be a multiple of kv heads "
                f"{roles.kv_heads!r}={g}"
            )
    out = tuple(size[label] for label in spec.out)
    return [out, tuple(size[label] for label in spec.lse_term)] if spec.lse else [out]


def op_shape(spec: OpSpec, shapes: Sequence[Shape], where: str) -> Shape:
    if not spec.labelled:
        return _unlabelled_op_shape(spec, shapes, where)
    assert spec.inputs is not None and spec.output is not None
    sizes = _Sizes(where, broadcast=False)
    for i, (term, shape) in enumerate(zip(spec.inputs, shapes)):
        if i == 0 and spec.op == "dropout_keep":
            continue  # a PRNG key: typed (shape []) or raw uint32 data (shape [2])
        if len(term) != len(shape):
            raise GraphError(
                f"{where}: operand {i} term {''.join(term)!r} has {len(term)} labels, "
                f"found shape {list(shape)}"
            )
        for label, size in zip(term, shape):
            # put_tile's tile and crop's reference have the cut label at another size
            if i > 0 and spec.op in ("put_tile", "crop") and label == spec.args[0]:
                continue
            sizes.bind(label, size, f"operand {i}")
    inputs_labels = {label for term in spec.inputs for label in term}
    output = spec.output
    opdef = ops.OPS[spec.op]
    if spec.op in ("tile", "pad_tiles", "num_tiles", "put_tile"):
        label = str(spec.args[0])
        if label in sizes.sizes and sizes.sizes[label] == 0:
            raise GraphError(f"{where}: cannot tile the empty axis {label!r}")
    if spec.op == "attn_mask":
        return _mask_shape(spec, sizes, where)
    if spec.op == "crop":
        return _crop_shape(spec, shapes, where)
    if spec.op in TILE_RANGE_OPS and (len(spec.inputs[0]) < 2 or len(spec.inputs[1]) < 2):
        raise GraphError(
            f"{where}: {spec.op} reads positions from the second-to-last axis of q and k; "
            "expected terms such as bhqd,bhkd"
        )
    if spec.op == "rsqrt_size" and sizes.sizes.get(str(spec.args[0])) == 0:
        raise GraphError(f"{where}: rsqrt_size of the empty axis {spec.args[0]!r}")
    if spec.op in SCALAR_OPS:
        if output:
            raise GraphError(f"{where}: {spec.op} writes a scalar, found output {output!r}")
        if spec.op in ("rsqrt_size", "num_tiles") and spec.args[0] not in inputs_labels:
            raise GraphError(f"{where}: label {spec.args[0]!r} appears in no operand")
        return ()
    missing = [label for label in output if label not in inputs_labels]
    if missing:
        raise GraphError(f"{where}: output labels {missing} appear in no operand")
    if opdef.kind == "elementwise" and spec.op not in ("full", "dropout_keep"):
        checked = spec.inputs[:1] if spec.op == "cast_like" else spec.inputs
        dropped = sorted({label for term in checked for label in term} - set(output))
        if dropped:
            raise GraphError(
                f"{where}: elementwise output drops labels {dropped}; use a reduce op for that"
            )
    result = [sizes.sizes[label] for label in output]
    if spec.op == "softmax" and spec.args[0] not in output:
        raise GraphError(f"{where}: the softmax label {spec.args[0]!r} is not in the output")
    if spec.op in ("tile", "put_tile"):
        label, size = spec.args
        if label not in output:
            raise GraphError(f"{where}: the tiled label {label!r} is not in the output")
        if shapes[-1] != ():
            raise GraphError(f"{where}: the tile index must be a scalar, found {list(shapes[-1])}")
        if spec.op == "tile":
            at = output.index(label)
            result[at] = tile_size(int(size), result[at])
    if spec.op == "pad_tiles":
        label, size = spec.args
        if label not in output:
            raise GraphError(f"{where}: the padded label {label!r} is not in the output")
        at = output.index(label)
        tile = tile_size(int(size), result[at])
        result[at] = -(-result[at] // tile) * tile
    return tuple(result)


def _mask_shape(spec: OpSpec, sizes: _Sizes, where: str) -> Shape:
    assert spec.inputs is not None and spec.output is not None
    if len(spec.output) != 2:
        raise GraphError(f"{where}: attn_mask writes [query, key-tile], found {spec.output!r}")
    query, key = spec.output
    if query not in spec.inputs[0] or key not in spec.inputs[1]:
        raise GraphError(
            f"{where}: attn_mask output `qk` takes q from operand 0 and k from operand 1"
        )
    sq, skv = sizes.sizes[query], sizes.sizes[key]
    return (tile_size(int(spec.args[0]), sq), tile_size(int(spec.args[1]), skv))


def _crop_shape(spec: OpSpec, shapes: Sequence[Shape], where: str) -> Shape:
    assert spec.inputs is not None and spec.output is not None
    label = str(spec.args[0])
    x_term, like_term = spec.inputs
    if spec.output != x_term or label not in x_term or label not in like_term:
        raise GraphError(f"{where}: crop keeps operand 0's labels and cuts {label!r}")
    at = x_term.index(label)
    size = shapes[1][like_term.index(label)]
    if size > shapes[0][at]:
        raise GraphError(f"{where}: cannot crop {label!r} of size {shapes[0][at]} to {size}")
    return shapes[0][:at] + (size,) + shapes[0][at + 1 :]


def _unlabelled_op_shape(spec: OpSpec, shapes: Sequence[Shape], where: str) -> Shape:
    opdef = ops.OPS[spec.op]
    if opdef.kind == "reduce":
        shape = shapes[0]
        axes = spec.args or tuple(range(len(shape)))
        for axis in axes:
            if not isinstance(axis, int) or axis >= len(shape):
                raise GraphError(f"{where}: axis {axis} is out of range for shape {list(shape)}")
        return tuple(s for i, s in enumerate(shape) if i not in axes)
    if spec.op == "softmax" and not shapes[0]:
        raise GraphError(f"{where}: softmax over the last axis needs rank >= 1, found a scalar")
    read = [shapes[i] for i in spec.read_operands]
    return _broadcast(read, where) if read else ()


def _node_shapes(node: EinsumNode, index: int, shapes: list[Shape]) -> list[Shape]:
    where = f"node {index} {node.spec!r}"
    parsed = node.parsed
    if isinstance(parsed, EinsumSpec):
        return [einsum_shape(parsed, shapes, where)]
    if isinstance(parsed, ReshapeSpec):
        return [reshape_shape(parsed, shapes, where)]
    if isinstance(parsed, FlashSpec):
        return flash_shapes(parsed, shapes, where)
    if isinstance(parsed, OpSpec):
        return [op_shape(parsed, shapes, where)]
    if isinstance(parsed, LoopSpec):
        return _loop_shapes(node, parsed, shapes, where)
    if isinstance(parsed, CustomVjpSpec):
        return _custom_vjp_shapes(node, shapes, where)
    raise AssertionError(f"no shape rule for {node.kind}")


def _loop_shapes(node: EinsumNode, spec: LoopSpec, shapes: list[Shape], where: str) -> list[Shape]:
    assert node.body is not None
    if shapes[0] != () or shapes[1] != ():
        raise GraphError(f"{where}: lo and hi must be scalars, found {shapes[0]}, {shapes[1]}")
    carried = shapes[len(shapes) - spec.carry :]
    body_inputs = node.body.inputs
    known = {body_inputs[0]: ()}
    known.update(dict(zip(body_inputs[1:], shapes[2:])))
    try:
        body_shapes = infer_shapes(node.body, known)
    except TlirError as error:
        raise GraphError(f"in the body of {where}: {error}") from None
    results = [body_shapes[t] for t in node.body.outputs]
    for i, (before, after) in enumerate(zip(carried, results)):
        if before != after:
            raise GraphError(
                f"{where}: carried value {i} enters with shape {list(before)} and leaves the "
                f"body with {list(after)}"
            )
    return list(carried)


def _custom_vjp_shapes(node: EinsumNode, shapes: list[Shape], where: str) -> list[Shape]:
    """The body's result shapes; the grad body must give each operand a same-shaped cotangent."""
    assert node.body is not None and node.grad_body is not None
    try:
        body_shapes = infer_shapes(node.body, dict(zip(node.body.inputs, shapes)))
        results = [body_shapes[t] for t in node.body.outputs]
        grad_inputs = [*shapes, *results, *results]
        grad_shapes = infer_shapes(node.grad_body, dict(zip(node.grad_body.inputs, grad_inputs)))
    except TlirError as error:
        raise GraphError(f"in {where}: {error}") from None
    for i, (shape, t) in enumerate(zip(shapes, node.grad_body.outputs)):
        if grad_shapes[t] not in (shape, ()):
            raise GraphError(
                f"{where}: the cotangent of operand {i} has shape {list(grad_shapes[t])}, "
                f"expected {list(shape)}"
            )
    return results


def infer_shapes(
    graph: EinsumGraph, input_shapes: Mapping[int | str, Sequence[int]]
) -> dict[int, Shape]:
    """Shapes of every tensor, from the shapes of the graph inputs (keys: index or name)."""
    if not isinstance(input_shapes, Mapping):
        raise GraphError(
            "infer_shapes takes {tensor index or name: shape}, found "
            f"{type(input_shapes).__name__}"
        )
    shapes: dict[int, Shape] = {}
    for key, shape in input_shapes.items():
        index = _tensor_index(graph, key)
        try:
            shapes[index] = tuple(operator.index(s) for s in shape)
        except (TypeError, ValueError):
            raise GraphError(f"the shape of tensor {key!r} must be integers, found {shape!r}")
        if any(s < 0 for s in shapes[index]):
            raise GraphError(f"the shape of tensor {key!r} has a negative size: {list(shape)}")
    missing = [t for t in graph.inputs if t not in shapes]
    if missing:
        names = ", ".join(f"{t} ({graph.tensors[t]!r})" for t in missing)
        raise GraphError(f"infer_shapes needs the shape of every graph input; missing {names}")
    for index, node in graph.iter_nodes():
        operand_shapes = []
        for position, t in enumerate(node.inputs):
            if t in shapes:
                operand_shapes.append(shapes[t])
            elif t in node.reads:
                raise GraphError(
                    f"node {index} {node.spec!r}: operand {position} (tensor {t} "
                    f"{graph.tensors[t]!r}) has no shape: nothing writes it"
                )
            else:
                operand_shapes.append(())  # the seed's placeholder operand
        for t, shape in zip(node.outputs, _node_shapes(node, index, operand_shapes)):
            shapes[t] = shape
    return shapes


def _tensor_index(graph: EinsumGraph, key: int | str) -> int:
    if isinstance(key, int) and 0 <= key < len(graph.tensors):
        return key
    if isinstance(key, str) and key in graph.tensors:
        return graph.tensors.index(key)
    raise GraphError(
        f"infer_shapes: unknown tensor {key!r}; the graph's inputs are "
        f"{[graph.tensors[t] for t in graph.inputs]}"
    )
