"""A readable Python/JAX rendering of a lowered graph: what `backends.jax.lower` computes.

`render(graph)` returns the source of a module defining `graph(*inputs) -> tuple`, one line per
node in the order the JAX backend runs them, e.g.

    scores = jnp.einsum("bhqd,bhkd->bhqk", q_tile, k_tile, preferred_element_type=jnp.float32)
    hi_2 = end_kv_tile(q.shape[-2], k.shape[-2], i, 32, 16, 0)
    (acc, max_, sum_) = lax.fori_loop(jnp.int32(lo_2), jnp.int32(hi_2), step_acc, (acc0, ...))

Loop bodies become nested `def`s that close over the loop's invariants; a loop whose bounds may
be traced values (block skipping) converts both to int32, as the JAX backend does, and becomes a
while loop. A custom_vjp node becomes a nested `@jax.custom_vjp def region_<result>(...)` (its
body), with `region_<result>.defvjp(fwd, bwd)`: the forward saves the operands and results, the
backward is the grad body, and operands that are not floating point (a PRNG key) get None.
Ops that are more than one jnp call (tiles, the attention mask, tile bounds, dropout masks,
masked softmax) call small helpers printed at the top, written to match
`backends/interpreter.py` and `backends/jax.py`. The text is executable and tested against the
JAX backend. This module renders text only; it never imports JAX.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import math
import re
from collections.abc import Mapping, Sequence

from backends.jax_source_helpers import HELPER_NEEDS, HELPERS, HELPERS_USING_JAX
from tlir import EinsumGraph, EinsumNode, LoweringError, TlirError, infer_shapes
from tlir.spec import CustomVjpSpec, EinsumSpec, FlashSpec, LoopSpec, OpSpec, ReshapeSpec, Term

Shape = tuple[int, ...]

TILE_RANGE_OPS = ("first_kv_tile", "end_kv_tile", "first_q_tile", "end_q_tile")
FULL_TILE_OPS = ("first_full_kv_tile", "end_full_kv_tile")

UNARY = {
    "exp": "jnp.exp({0})",
    "log": "jnp.log({0})",
    "neg": "-{0}",
    "abs": "jnp.abs({0})",
    "sqrt": "jnp.sqrt({0})",
    "rsqrt": "1 / jnp.sqrt({0})",
    "square": "{0} * {0}",
    "tanh": "jnp.tanh({0})",
    "sigmoid": "1 / (1 + jnp.exp(-{0}))",
    "relu": "jnp.maximum({0}, 0)",
    "recip": "1 / {0}",
    "inf_to_zero": "jnp.where(jnp.isfinite({0}), {0}, jnp.zeros_like({0}))",
}
BINARY = {
    "add": "{0} + {1}",
    "sub": "{0} - {1}",
    "mul": "{0} * {1}",
    "div": "{0} / {1}",
    "maximum": "jnp.maximum({0}, {1})",
    "minimum": "jnp.minimum({0}, {1})",
    "safe_div": "jnp.where({1} == 0, jnp.zeros_like({0}), {0} / jnp.where({1} == 0, 1, {1}))",
}
REDUCE = {"sum": "jnp.sum", "max": "jnp.max", "min": "jnp.min", "mean": "jnp.mean"}

_RESERVED = (
    set(keyword.kwlist)
    | set(dir(builtins))
    | {"jnp", "jax", "lax", "math", "np", "graph", "carry", "x"}
    | {"operands", "results", "residuals", "cotangents"}
    | set(HELPERS)
)


class _Names:
    """Python identifiers for tensors, unique across the whole module (nested defs included)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def fresh(self, name: str) -> str:
        base = re.sub(r"\W", "_", name) or "t"
        if base[0].isdigit():
            base = "t_" + base
        if base in _RESERVED:
            base += "_"
        unique, n = base, 1
        while unique in self.taken:
            n += 1
            unique = f"{base}{n}" if base.endswith("_") else f"{base}_{n}"
        self.taken.add(unique)
        return unique


def aligned(expr: str, term: Term, target: Term) -> str:
    """`expr` (labelled `term`) viewed with the axes of `target`, as `align` in the interpreter."""
    if not term or tuple(term) == tuple(target):
        return expr
    present = [label for label in target if label in term]
    perm = tuple(term.index(label) for label in present)
    if perm != tuple(range(len(term))):
        expr = f"jnp.transpose({expr}, {perm})"
    if len(present) == len(target):
        return expr
    index = ["None" if label not in term else ":" for label in target]
    while index and index[-1] == ":":
        index.pop()
    return f"{expr}[{', '.join(index)}]"


class _Views:
    """`views[i]`: operand i aligned to the output term, computed only when used."""

    def __init__(self, args: list[str], terms: tuple[Term, ...], out: Term) -> None:
        self.args, self.terms, self.out = args, terms, out

    def __getitem__(self, i: int) -> str:
        return aligned(self.args[i], self.terms[i], self.out)


def _number(value: object) -> str:
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "math.inf" if value > 0 else "-math.inf"
    return repr(value)


class _Renderer:
    def __init__(self) -> None:
        self.names = _Names()
        self.helpers: set[str] = set()
        self.uses_jax = False

    def helper(self, name: str) -> str:
        self.helpers.add(name)
        self.helpers.update(HELPER_NEEDS.get(name, ()))
        self.uses_jax = self.uses_jax or name in HELPERS_USING_JAX
        return name

    def graph_lines(
        self,
        graph: EinsumGraph,
        env: dict[int, str],
        shapes: Mapping[int, Shape] | None,
        indent: str,
    ) -> list[str]:
        lines = []
        for index in graph.topological_order():
            node = graph.nodes[index]
            args = [env.get(t, "None") for t in node.inputs]
            try:
                lines += self.node(node, args, graph, env, shapes, indent)
            except TlirError as error:
                raise type(error)(f"node {index} {node.spec!r}: {error}") from None
        return lines

    def node(
        self,
        node: EinsumNode,
        args: list[str],
        graph: EinsumGraph,
        env: dict[int, str],
        shapes: Mapping[int, Shape] | None,
        indent: str,
    ) -> list[str]:
        spec = node.parsed
        if isinstance(spec, FlashSpec):
            raise LoweringError(
                f"flash node {spec.text!r} is left: run the 'tile-flash' pass first "
                "(the JAX backend cannot lower it)"
            )
        if isinstance(spec, LoopSpec):
            return self.loop(node, spec, args, graph, env, shapes, indent)
        if isinstance(spec, CustomVjpSpec):
            return self.custom_vjp(node, args, graph, env, shapes, indent)
        result = self.names.fresh(graph.tensors[node.outputs[0]])
        env[node.outputs[0]] = result
        if isinstance(spec, EinsumSpec):
            expr = self.einsum(node, spec, args)
        elif isinstance(spec, ReshapeSpec):
            expr = self.reshape(spec, args)
        elif isinstance(spec, OpSpec):
            expr = self.op(spec, args) if spec.labelled else self.seed_op(spec, args)
        else:
            raise LoweringError(f"no Python rendering for node kind {node.kind!r}")
        line = f"{indent}{result} = {expr}"
        if shapes is not None and node.outputs[0] in shapes:
            shape = shapes[node.outputs[0]]
            line += f"  # [{','.join(str(s) for s in shape)}]"
        return [line]

    def einsum(self, node: EinsumNode, spec: EinsumSpec, args: list[str]) -> str:
        accumulate = node.attr("acc")
        operands = ", ".join(args)
        if accumulate is not None:
            return f'jnp.einsum("{spec.text}", {operands}, preferred_element_type=jnp.{accumulate})'
        return f'jnp.einsum("{spec.text}", {operands})'

    def reshape(self, spec: ReshapeSpec, args: list[str]) -> str:
        source = [axis.label for axis in spec.source]
        dims = []
        for axis in spec.target:
            if axis.label is None:
                dims.append(str(axis.size))
            elif axis.label in source:
                dims.append(f"{args[0]}.shape[{source.index(axis.label)}]")
            else:
                donor = next((i for i, d in enumerate(spec.donors) if axis.label in d), None)
                if donor is None:
                    dims.append("-1")
                else:
                    position = spec.donors[donor].index(axis.label)
                    dims.append(f"{args[donor + 1]}.shape[{position}]")
        return f"jnp.reshape({args[0]}, ({', '.join(dims)}{',' if len(dims) == 1 else ''}))"

    def op(self, spec: OpSpec, args: list[str]) -> str:
        assert spec.inputs is not None and spec.output is not None
        name, out, terms = spec.op, spec.output, spec.inputs
        views = _Views(args, terms, out)
        if name in UNARY:
            return UNARY[name].format(_wrap(views[0]))
        if name in BINARY:
            return BINARY[name].format(_wrap(views[0]), _wrap(views[1]))
        if name in REDUCE or name == "logsumexp":
            term = terms[0]
            axes = tuple(i for i, label in enumerate(term) if label not in out)
            axis = str(axes[0]) if len(axes) == 1 else str(axes)
            call = self.helper("logsumexp") if name == "logsumexp" else REDUCE[name]
            kept = tuple(label for label in term if label in out)
            return aligned(f"{call}({args[0]}, axis={axis})", kept, out)
        return self.special(spec, args, views)

    def special(self, spec: OpSpec, args: list[str], views: _Views) -> str:
        name, out, terms = spec.op, spec.output, spec.inputs
        assert terms is not None and out is not None

        def size(label: str) -> str:
            # the interpreter takes a label's size from the last operand that has it
            for arg, term in reversed(list(zip(args, terms))):
                if label in term:
                    return f"{arg}.shape[{term.index(label)}]"
            raise LoweringError(f"label {label!r} appears in no operand")

        if name == "scale":
            return f"{_wrap(views[0])} * {_number(spec.args[0])}"
        if name == "div_scalar":
            return f"{_wrap(views[0])} / {_number(spec.args[0])}"
        if name == "cast":
            return f"{_wrap(views[0])}.astype({_dtype(spec.args[0])})"
        if name == "cast_like":
            return f"{_wrap(views[0])}.astype({args[1]}.dtype)"
        if name == "softmax":
            return f"{self.helper('softmax')}({views[0]}, axis={out.index(str(spec.args[0]))})"
        if name == "select":
            return f"jnp.where({views[0]}, {views[1]}, {views[2]})"
        if name == "const":
            return f"jnp.asarray({_number(float(spec.args[0]))}, dtype=jnp.float32)"
        if name == "iconst":
            return str(int(spec.args[0]))
        if name == "full":
            dims = ", ".join(size(label) for label in out) + ("," if len(out) == 1 else "")
            return f"jnp.full(({dims}), {_number(float(spec.args[0]))}, jnp.float32)"
        if name == "rsqrt_size":
            return f"1.0 / math.sqrt({size(str(spec.args[0]))})"
        if name == "num_tiles":
            extent = size(str(spec.args[0]))
            return f"-(-{extent} // {self.helper('tile_size')}({int(spec.args[1])}, {extent}))"
        label = str(spec.args[0])
        if name == "pad_tiles":
            return f"{self.helper('pad_tiles')}({views[0]}, {out.index(label)}, {spec.args[1]})"
        if name == "tile":
            axis = out.index(label)
            return f"{self.helper('tile')}({views[0]}, {args[1]}, {spec.args[1]}, axis={axis})"
        if name == "put_tile":
            axis = out.index(label)
            return f"{self.helper('put_tile')}({views[0]}, {views[1]}, {args[2]}, axis={axis})"
        if name == "crop":
            axis = out.index(label)
            cut = f"{args[1]}.shape[{terms[1].index(label)}]"
            return f"{views[0]}[{':, ' * axis}:{cut}]"
        if name in TILE_RANGE_OPS:
            return self.tile_range(spec, args)
        if name in FULL_TILE_OPS:
            return self.full_tile_range(spec, args)
        if name == "dropout_keep":
            dims = ", ".join(size(label) for label in out) + ("," if len(out) == 1 else "")
            call = self.helper("dropout_keep")
            return f"{call}({args[0]}, {args[3]}, {args[4]}, {float(spec.args[0])!r}, ({dims}))"
        if name == "attn_mask":
            bq, bk, left, right = spec.args
            query, key = out
            sq = size(query)
            skv = f"{args[1]}.shape[{terms[1].index(key)}]"
            values = [sq, skv, args[2], args[3], str(bq), str(bk)]
            values += [_bound(left), _bound(right)]
            return f"{self.helper('attn_mask')}({', '.join(values)})"
        raise LoweringError(f"no Python rendering of op {name!r}")

    def tile_range(self, spec: OpSpec, args: list[str]) -> str:
        """A block-skipping loop bound, as `tile_range` in the interpreter: a plain int when the
        side it depends on is unbounded (a static trip count), else a helper call."""
        name = spec.op
        bq, bk, left, right = (int(a) if math.isfinite(float(a)) else a for a in spec.args)
        sq, skv = (f"{arg}.shape[-2]" for arg in args[:2])
        side = right if name in ("end_kv_tile", "first_q_tile") else left
        if not math.isfinite(float(side)):
            if name.startswith("first_"):
                return "0"
            extent, block = (skv, bk) if name == "end_kv_tile" else (sq, bq)
            return f"-(-{extent} // {self.helper('tile_size')}({block}, {extent}))"
        return f"{self.helper(name)}({sq}, {skv}, {args[2]}, {bq}, {bk}, {side})"

    def full_tile_range(self, spec: OpSpec, args: list[str]) -> str:
        """The run of key tiles that need no mask: static when no window side is bounded."""
        bq, bk, left, right = (int(a) if math.isfinite(float(a)) else a for a in spec.args)
        sq, skv = (f"{arg}.shape[-2]" for arg in args[:2])
        if not (math.isfinite(float(left)) or math.isfinite(float(right))):
            if spec.op == "first_full_kv_tile":
                return "0"
            return f"{skv} // {self.helper('tile_size')}({bk}, {skv})"
        call = f"{self.helper('full_kv_tiles')}({sq}, {skv}, {args[2]}, {bq}, {bk}, "
        call += f"{_bound(left)}, {_bound(right)})"
        return call + ("[0]" if spec.op == "first_full_kv_tile" else "[1]")

    def seed_op(self, spec: OpSpec, args: list[str]) -> str:
        """The seed's unlabelled, rank-polymorphic forms."""
        name = spec.op
        if name == "softmax":
            return f"{self.helper('softmax')}({args[0]}, axis=-1)"
        if name == "div_scalar":
            return f"{args[0]} / {_number(spec.args[0])}"
        if name == "scale":
            return f"{args[0]} * {_number(spec.args[0])}"
        if name == "cast":
            return f"{args[0]}.astype({_dtype(spec.args[0])})"
        if name in UNARY:
            return UNARY[name].format(args[0])
        if name in BINARY:
            return BINARY[name].format(args[0], args[1])
        if name in REDUCE or name == "logsumexp":
            axes = tuple(int(a) for a in spec.args)
            axis = "None" if not axes else str(axes[0]) if len(axes) == 1 else str(axes)
            call = self.helper("logsumexp") if name == "logsumexp" else REDUCE[name]
            if name == "logsumexp" and not axes:
                axis = f"tuple(range({args[0]}.ndim))"
            return f"{call}({args[0]}, axis={axis})"
        if name == "select":
            return f"jnp.where({', '.join(args)})"
        if name == "cast_like":
            return f"{args[0]}.astype({args[1]}.dtype)"
        if name == "const":
            return f"jnp.asarray({_number(float(spec.args[0]))}, dtype=jnp.float32)"
        if name == "iconst":
            return str(int(spec.args[0]))
        raise LoweringError(f"op {name!r} needs labelled terms")

    def loop(
        self,
        node: EinsumNode,
        spec: LoopSpec,
        args: list[str],
        graph: EinsumGraph,
        env: dict[int, str],
        shapes: Mapping[int, Shape] | None,
        indent: str,
    ) -> list[str]:
        body = node.body
        assert body is not None
        body_inputs = body.inputs
        n_invariant = len(node.inputs) - 2 - spec.carry
        body_env: dict[int, str] = {}
        # Invariants: the body reads the outer variables directly (the def closes over them).
        for t, outer in zip(body_inputs[1 : 1 + n_invariant], args[2 : 2 + n_invariant]):
            body_env[t] = outer
        results = [self.names.fresh(graph.tensors[t]) for t in node.outputs]
        step = self.names.fresh(f"step_{results[0]}")
        index = self.names.fresh(body.tensors[body_inputs[0]])
        body_env[body_inputs[0]] = index
        carried = [self.names.fresh(body.tensors[t]) for t in body_inputs[1 + n_invariant :]]
        body_env.update(zip(body_inputs[1 + n_invariant :], carried))
        body_shapes = _body_shapes(node, shapes)
        inner = indent + "    "
        lines = [f"{indent}def {step}({index}, carry):"]
        lines.append(f"{inner}{_tuple(carried)} = carry")
        lines += self.graph_lines(body, body_env, body_shapes, inner)
        lines.append(f"{inner}return {_tuple([body_env[t] for t in body.outputs])}")
        initial = _tuple(args[2 + n_invariant :])
        lo, hi = args[0], args[1]
        if not all(_is_python_int(graph, t) for t in node.inputs[:2]):
            # a bound that may be traced (block skipping): int32 both, a while loop
            lo, hi = f"jnp.int32({lo})", f"jnp.int32({hi})"
        call = f"lax.fori_loop({lo}, {hi}, {step}, {initial})"
        lines.append(f"{indent}{_tuple(results)} = {call}")
        env.update(zip(node.outputs, results))
        return lines

    def custom_vjp(
        self,
        node: EinsumNode,
        args: list[str],
        graph: EinsumGraph,
        env: dict[int, str],
        shapes: Mapping[int, Shape] | None,
        indent: str,
    ) -> list[str]:
        """`@jax.custom_vjp def region_<result>` (the body) with `defvjp(fwd, bwd)`, as
        `JaxInterpreter.custom_vjp`: residuals are the operands and results; bwd is the grad
        body."""
        forward, backward = node.body, node.grad_body
        assert forward is not None and backward is not None
        self.uses_jax = True
        results = [self.names.fresh(graph.tensors[t]) for t in node.outputs]
        region = self.names.fresh(f"region_{results[0]}")
        fwd, bwd = self.names.fresh(f"{region}_fwd"), self.names.fresh(f"{region}_bwd")
        body_shapes, grad_shapes = _region_shapes(node, shapes)
        inner = indent + "    "

        params = [self.names.fresh(forward.tensors[t]) for t in forward.inputs]
        body_env = dict(zip(forward.inputs, params))
        lines = [f"{indent}@jax.custom_vjp", f"{indent}def {region}({', '.join(params)}):"]
        lines += self.graph_lines(forward, body_env, body_shapes, inner)
        lines.append(f"{inner}return {_tuple([body_env[t] for t in forward.outputs])}")

        lines += ["", f"{indent}def {fwd}(*operands):"]
        lines.append(f"{inner}results = {region}(*operands)")
        lines.append(f"{inner}return results, (operands, results)")

        n_in, n_out = len(node.inputs), len(node.outputs)
        names = [self.names.fresh(backward.tensors[t]) for t in backward.inputs]
        grad_env = dict(zip(backward.inputs, names))
        operands, saved, cotangents = (
            names[:n_in],
            names[n_in : n_in + n_out],
            names[n_in + n_out :],
        )
        lines += ["", f"{indent}def {bwd}(residuals, cotangents):"]
        lines.append(f"{inner}{_tuple(operands)}, {_tuple(saved)} = residuals")
        lines.append(f"{inner}{_tuple(cotangents)} = cotangents")
        lines += self.graph_lines(backward, grad_env, grad_shapes, inner)
        call = self.helper("cotangent")
        grads = [f"{call}({x}, {grad_env[g]})" for x, g in zip(operands, backward.outputs)]
        lines.append(f"{inner}return {_tuple(grads)}")

        lines += ["", f"{indent}{region}.defvjp({fwd}, {bwd})"]
        lines.append(f"{indent}{_tuple(results)} = {region}({', '.join(args)})")
        env.update(zip(node.outputs, results))
        return lines


def _is_python_int(graph: EinsumGraph, tensor: int) -> bool:
    """Whether the JAX backend sees `tensor` as a plain int (a static loop bound): written by
    iconst, num_tiles, or a tile bound whose side is unbounded."""
    producer = graph.producers().get(tensor)
    if producer is None:
        return False
    spec = graph.nodes[producer].parsed
    if not isinstance(spec, OpSpec) or spec.inputs is None:
        return False
    if spec.op in ("iconst", "num_tiles"):
        return True
    if spec.op in FULL_TILE_OPS:
        return not any(math.isfinite(float(side)) for side in spec.args[2:])
    if spec.op not in TILE_RANGE_OPS:
        return False
    left, right = spec.args[2], spec.args[3]
    side = right if spec.op in ("end_kv_tile", "first_q_tile") else left
    return not math.isfinite(float(side))


def _bound(value: object) -> str:
    number = float(value)  # type: ignore[arg-type]
    return _number(number) if number in (float("inf"), float("-inf")) else str(int(number))


def _tuple(names: Sequence[str]) -> str:
    return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"


def _wrap(expr: str) -> str:
    """Parenthesize an expression used as an operand of + - * /, unless it is atomic."""
    top = ast.parse(expr, mode="eval").body
    if isinstance(top, (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)):
        return expr
    return f"({expr})"


def _dtype(value: object) -> str:
    text = str(value)
    return f"jnp.{text}" if re.fullmatch(r"[a-z]+[0-9]*", text) else repr(text)


def _body_shapes(node: EinsumNode, shapes: Mapping[int, Shape] | None) -> dict[int, Shape] | None:
    """Shapes inside a loop body, from the shapes of the loop's operands (None if unknown)."""
    assert node.body is not None
    if shapes is None or not all(t in shapes for t in node.inputs[2:]):
        return None
    known = {node.body.inputs[0]: ()}
    known.update(zip(node.body.inputs[1:], (shapes[t] for t in node.inputs[2:])))
    try:
        return infer_shapes(node.body, known)
    except TlirError:
        return None


def _region_shapes(
    node: EinsumNode, shapes: Mapping[int, Shape] | None
) -> tuple[dict[int, Shape] | None, dict[int, Shape] | None]:
    """Shapes inside a custom_vjp node's body and grad body (None if unknown)."""
    assert node.body is not None and node.grad_body is not None
    if shapes is None or not all(t in shapes for t in node.inputs):
        return None, None
    operands = [shapes[t] for t in node.inputs]
    try:
        body = infer_shapes(node.body, dict(zip(node.body.inputs, operands)))
        results = [body[t] for t in node.body.outputs]
        known = dict(zip(node.grad_body.inputs, [*operands, *results, *results]))
        return body, infer_shapes(node.grad_body, known)
    except TlirError:
        return None, None


def render(graph: EinsumGraph, shapes: Mapping[int, Shape] | None = None) -> str:
    """Python source defining `graph(*inputs)`; `shapes` adds a shape comment to each line."""
    graph.validate()
    renderer = _Renderer()
    env = {t: renderer.names.fresh(graph.tensors[t]) for t in graph.inputs}
    params = [env[t] for t in graph.inputs]
    body = renderer.graph_lines(graph, env, shapes, "    ")
    outputs = [env[t] for t in graph.outputs]
    lines = [
        '"""Python/JAX rendering of a lowered tlir graph (what backends.jax runs)."""',
        "",
        "import math",
        "",
        *(["import jax"] if renderer.uses_jax else []),
        "import jax.numpy as jnp",
        "from jax import lax",
    ]
    for name, source in HELPERS.items():
        if name in renderer.helpers:
            lines += ["", source.strip("\n")]
    lines += ["", "", f"def graph({', '.join(params)}):"]
    if params:
        lines.append(f"    {_tuple(params)} = (jnp.asarray(x) for x in {_tuple(params)})")
    lines += body
    lines.append(f"    return {_tuple(outputs)}")
    return "\n".join(lines) + "\n"
