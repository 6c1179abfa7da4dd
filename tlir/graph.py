"""`EinsumGraph` and `EinsumNode`: the seed's builder API, in Python naming.

A graph is a list of named tensors and a list of nodes; a node reads tensors by index and writes
tensors by index. Graphs are append-only and nodes are frozen: passes build new graphs, so every
intermediate stays printable. Inputs and outputs are the declared ones, or, when none are declared
(the seed never declares them), the tensors no node writes and the tensors no node reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import networkx as nx

from tlir.errors import GraphError, TlirError
from tlir.ops import DTYPES
from tlir.spec import CustomVjpSpec, FlashSpec, LoopSpec, OpSpec, Spec, parse_spec


@dataclass(frozen=True)
class EinsumNode:
    """One operation: a spec, the tensors it reads and the tensors it writes.

    `kind` is one of "einsum", "reshape", "elementwise", "reduce", "flash", "loop",
    "custom_vjp"; it follows
    from the spec, except that the seed's constructors (`elem_unary`, ...) name it, which
    resolves texts such as `exp` that are also valid einsums. A loop node carries its `body`;
    a custom_vjp node its `body` and its derivative, `grad_body`.
    `attrs` are extra sorted key/value pairs, such as `acc=float32` for an einsum's accumulator.
    """

    spec: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    kind: str | None = None
    attrs: tuple[tuple[str, str], ...] = ()
    body: EinsumGraph | None = None
    grad_body: EinsumGraph | None = None
    parsed: Spec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", _indices(self.inputs, "inputs", self.spec))
        object.__setattr__(self, "outputs", _indices(self.outputs, "outputs", self.spec))
        object.__setattr__(self, "attrs", _attributes(self.attrs, self.spec))
        for role in ("body", "grad_body"):
            body = getattr(self, role)
            if body is not None and not isinstance(body, EinsumGraph):
                raise GraphError(
                    f"node {self.spec!r}: {role} must be an EinsumGraph, "
                    f"found {type(body).__name__}"
                )
        parsed = parse_spec(self.spec, self.kind)
        object.__setattr__(self, "parsed", parsed)
        object.__setattr__(self, "kind", parsed.kind)
        self._check_arity()

    # The seed's constructors -------------------------------------------------------------
    @classmethod
    def elem_unary(cls, op: str, input: int, output: int) -> EinsumNode:
        return cls(op, (input,), (output,), kind="elementwise")

    @classmethod
    def elem_binary(cls, op: str, left: int, right: int, output: int) -> EinsumNode:
        return cls(op, (left, right), (output,), kind="elementwise")

    @classmethod
    def reduce(cls, op: str, axes: Iterable[int], input: int, output: int) -> EinsumNode:
        axes_text = ",".join(str(int(a)) for a in axes)
        spec = f"{op}({axes_text})" if axes_text else op
        return cls(spec, (input,), (output,), kind="reduce")

    @classmethod
    def loop(
        cls, carry: int, inputs: Iterable[int], outputs: Iterable[int], body: EinsumGraph
    ) -> EinsumNode:
        return cls(f"loop(carry={carry})", tuple(inputs), tuple(outputs), body=body)

    # Derived facts -------------------------------------------------------------------------
    @property
    def reads(self) -> tuple[int, ...]:
        """The tensors whose values this node reads (the seed's placeholder operand is not)."""
        if isinstance(self.parsed, OpSpec):
            return tuple(self.inputs[i] for i in self.parsed.read_operands)
        return self.inputs

    def attr(self, key: str, default: str | None = None) -> str | None:
        return dict(self.attrs).get(key, default)

    def _check_arity(self) -> None:
        parsed = self.parsed
        if isinstance(parsed, CustomVjpSpec):
            self._check_custom_vjp()
            return
        if self.grad_body is not None:
            raise GraphError(f"node {self.spec!r}: only custom_vjp nodes have a grad body")
        if isinstance(parsed, LoopSpec):
            self._check_loop(parsed)
            return
        if self.attr("parallel") is not None:
            raise GraphError(
                f"node {self.spec!r}: only a loop node can be parallel (attribute parallel)"
            )
        if self.body is not None:
            raise GraphError(f"node {self.spec!r}: only loop and custom_vjp nodes have a body")
        expected_in = parsed.n_operands
        expected_out = parsed.n_results if isinstance(parsed, FlashSpec) else 1
        if len(self.inputs) != expected_in:
            raise GraphError(
                f"node {self.spec!r}: the spec takes {expected_in} operand(s), "
                f"found {len(self.inputs)} input tensor(s) {list(self.inputs)}"
            )
        if len(self.outputs) != expected_out:
            raise GraphError(
                f"node {self.spec!r}: the spec writes {expected_out} result(s), "
                f"found {len(self.outputs)} output tensor(s) {list(self.outputs)}"
            )

    def _check_custom_vjp(self) -> None:
        if self.body is None or self.grad_body is None:
            raise GraphError(f"node {self.spec!r}: a custom_vjp node needs a body and a grad body")
        n_in, n_out = len(self.inputs), len(self.outputs)
        if (len(self.body.inputs), len(self.body.outputs)) != (n_in, n_out):
            raise GraphError(
                f"node {self.spec!r}: the body must take {n_in} inputs and return {n_out}; "
                f"found {len(self.body.inputs)} and {len(self.body.outputs)}"
            )
        grad_in, grad_out = len(self.grad_body.inputs), len(self.grad_body.outputs)
        if (grad_in, grad_out) != (n_in + 2 * n_out, n_in):
            raise GraphError(
                f"node {self.spec!r}: the grad body must take (operands, results, result "
                f"cotangents) = {n_in + 2 * n_out} inputs and return {n_in} cotangents; "
                f"found {grad_in} and {grad_out}"
            )

    def _check_loop(self, parsed: LoopSpec) -> None:
        if self.body is None:
            raise GraphError(f"node {self.spec!r}: a loop node needs a body graph")
        n_invariant = len(self.inputs) - 2 - parsed.carry
        if n_invariant < 0:
            raise GraphError(
                f"node {self.spec!r}: expected lo, hi and {parsed.carry} carried values, "
                f"found {len(self.inputs)} input tensor(s)"
            )
        if len(self.outputs) != parsed.carry:
            raise GraphError(
                f"node {self.spec!r}: writes {parsed.carry} carried value(s), "
                f"found {len(self.outputs)} output tensor(s)"
            )
        body_in, body_out = len(self.body.inputs), len(self.body.outputs)
        if body_in != len(self.inputs) - 1 or body_out != parsed.carry:
            raise GraphError(
                f"node {self.spec!r}: the body must take (j, invariants, carried) = "
                f"{len(self.inputs) - 1} inputs and return {parsed.carry}; "
                f"found {body_in} inputs and {body_out} outputs"
            )


_ATTRIBUTE = re.compile(r"[A-Za-z0-9_.+-]+")


def _attributes(pairs: object, spec: str) -> tuple[tuple[str, str], ...]:
    """Sorted (key, value) pairs; both single words, so the text form can print them bare."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    try:
        result = tuple(sorted((str(k), str(v)) for k, v in items))  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise GraphError(
            f"node {spec!r}: attrs must be a mapping or (key, value) pairs, found {pairs!r}"
        ) from None
    for key, value in result:
        if not (_ATTRIBUTE.fullmatch(key) and _ATTRIBUTE.fullmatch(value)):
            raise GraphError(
                f"node {spec!r}: attribute {key}={value!r} must be words of letters, digits "
                "and _ . + -"
            )
        if key == "parallel" and not (value.isalpha() and len(set(value)) == len(value)):
            raise GraphError(
                f"node {spec!r}: attribute parallel={value} must list distinct labels, "
                "such as parallel=bh"
            )
        if key == "acc" and value not in DTYPES:
            raise GraphError(
                f"node {spec!r}: attribute acc={value} must name a dtype: "
                f"{', '.join(sorted(DTYPES))}"
            )
    return result


def _indices(values: Iterable[int], what: str, spec: str) -> tuple[int, ...]:
    try:
        result = tuple(values)
    except TypeError:
        raise GraphError(f"node {spec!r}: {what} must be a sequence of tensor indices") from None
    for value in result:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise GraphError(f"node {spec!r}: {what} must be tensor indices >= 0, found {value!r}")
    return result


class EinsumGraph:
    """Tensors (names, by index), nodes, and optionally declared inputs and outputs."""

    def __init__(self) -> None:
        self.tensors: list[str] = []
        self.nodes: list[EinsumNode] = []
        self.declared_inputs: list[int] = []
        self.declared_outputs: list[int] = []

    # Building --------------------------------------------------------------------------------
    def add_tensor(self, name: str) -> int:
        self.tensors.append(str(name))
        return len(self.tensors) - 1

    def add_node(self, node: EinsumNode) -> int:
        """Append `node`; a node that names a missing tensor is refused and changes nothing."""
        if not isinstance(node, EinsumNode):
            raise GraphError(f"add_node expects an EinsumNode, found {type(node).__name__}")
        for role, ids in (("reads", node.inputs), ("writes", node.outputs)):
            for tensor in ids:
                if tensor >= len(self.tensors):
                    raise GraphError(
                        f"node {node.spec!r} {role} tensor {tensor}, but the graph has "
                        f"{len(self.tensors)} tensors (0..{len(self.tensors) - 1})"
                    )
        self.nodes.append(node)
        return len(self.nodes) - 1

    def add_input(self, tensor: int) -> None:
        self._check_tensor(tensor, "add_input")
        if tensor not in self.declared_inputs:
            self.declared_inputs.append(tensor)

    def add_output(self, tensor: int) -> None:
        self._check_tensor(tensor, "add_output")
        if tensor not in self.declared_outputs:
            self.declared_outputs.append(tensor)

    def _check_tensor(self, tensor: int, what: str) -> None:
        is_index = isinstance(tensor, int) and not isinstance(tensor, bool)
        if not is_index or not 0 <= tensor < len(self.tensors):
            raise GraphError(
                f"{what}({tensor!r}): expected a tensor index in 0..{len(self.tensors) - 1}"
            )

    # Derived views ----------------------------------------------------------------------------
    @property
    def inputs(self) -> list[int]:
        if self.declared_inputs:
            return list(self.declared_inputs)
        written = {t for node in self.nodes for t in node.outputs}
        read = {t for node in self.nodes for t in node.reads}
        used = written | {t for node in self.nodes for t in node.inputs}
        return [
            t for t in range(len(self.tensors)) if t not in written and (t in read or t not in used)
        ]

    @property
    def outputs(self) -> list[int]:
        if self.declared_outputs:
            return list(self.declared_outputs)
        read = {t for node in self.nodes for t in node.inputs}
        written = {t for node in self.nodes for t in node.outputs}
        return [t for t in range(len(self.tensors)) if t not in read and t in written]

    def producers(self) -> dict[int, int]:
        """tensor index -> index of the node that writes it."""
        return {t: i for i, node in enumerate(self.nodes) for t in node.outputs}

    def consumers(self, tensor: int) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if tensor in node.inputs]

    def to_networkx(self) -> nx.DiGraph:
        """A bipartite DiGraph: ("tensor", i) and ("node", j) vertices, edges along data flow."""
        graph = nx.DiGraph()
        for i, name in enumerate(self.tensors):
            graph.add_node(("tensor", i), name=name)
        for j, node in enumerate(self.nodes):
            graph.add_node(("node", j), kind=node.kind, spec=node.spec)
            for t in node.inputs:
                graph.add_edge(("tensor", t), ("node", j))
            for t in node.outputs:
                graph.add_edge(("node", j), ("tensor", t))
        return graph

    def topological_order(self) -> list[int]:
        """Node indices in an order where producers come first: the insertion order whenever
        that is valid, else the smallest ready index first.

        Cached per node list: interpreters ask once per loop step.
        """
        key = tuple(map(id, self.nodes))
        cached = getattr(self, "_order", None)
        if cached is not None and cached[0] == key:
            return list(cached[1])
        writer = self.producers()
        dependencies = nx.DiGraph()
        dependencies.add_nodes_from(range(len(self.nodes)))
        for index, node in enumerate(self.nodes):
            dependencies.add_edges_from((writer[t], index) for t in node.inputs if t in writer)
        try:
            order = list(nx.lexicographical_topological_sort(dependencies))
        except nx.NetworkXUnfeasible:
            self.validate()
            raise
        self._order = (key, order)
        return list(order)

    def iter_nodes(self) -> Iterator[tuple[int, EinsumNode]]:
        for index in self.topological_order():
            yield index, self.nodes[index]

    # Verification -----------------------------------------------------------------------------
    def validate(self) -> None:
        """Reject double writes, written inputs, reads of unwritten non-inputs, and cycles."""
        writer: dict[int, int] = {}
        for j, node in enumerate(self.nodes):
            for t in node.outputs:
                if t in writer:
                    raise GraphError(
                        f"tensor {t} ({self.tensors[t]!r}) is written twice: by node {writer[t]} "
                        f"{self.nodes[writer[t]].spec!r} and node {j} {node.spec!r}"
                    )
                writer[t] = j
        inputs = set(self.inputs)
        for t in inputs & set(writer):
            raise GraphError(
                f"tensor {t} ({self.tensors[t]!r}) is a graph input but node {writer[t]} "
                f"{self.nodes[writer[t]].spec!r} writes it"
            )
        for j, node in enumerate(self.nodes):
            for t in node.reads:
                if t not in writer and t not in inputs:
                    raise GraphError(
                        f"node {j} {node.spec!r} reads tensor {t} ({self.tensors[t]!r}), which no "
                        "node writes and which is not a graph input"
                    )
        for t in self.outputs:
            if t not in writer and t not in inputs:
                raise GraphError(f"output tensor {t} ({self.tensors[t]!r}) is never written")
        try:
            cycle = nx.find_cycle(self.to_networkx())
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            specs = [self.nodes[v[1]].spec for u, v in cycle if v[0] == "node"]
            raise GraphError(f"the graph has a cycle through the nodes {specs}")
        for j, node in enumerate(self.nodes):
            for role, body in (("body", node.body), ("grad body", node.grad_body)):
                if body is None:
                    continue
                try:
                    body.validate()
                except TlirError as error:
                    raise GraphError(f"in the {role} of node {j} {node.spec!r}: {error}") from None

    # Forms --------------------------------------------------------------------------------------
    def copy(self) -> EinsumGraph:
        new = EinsumGraph()
        new.tensors = list(self.tensors)
        new.nodes = list(self.nodes)
        new.declared_inputs = list(self.declared_inputs)
        new.declared_outputs = list(self.declared_outputs)
        return new

    def __str__(self) -> str:
        from tlir.text import format_graph

        return format_graph(self)

    def __repr__(self) -> str:
        return f"<EinsumGraph {len(self.tensors)} tensors, {len(self.nodes)} nodes>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EinsumGraph):
            return NotImplemented
        return (
            self.tensors == other.tensors
            and self.nodes == other.nodes
            and self.declared_inputs == other.declared_inputs
            and self.declared_outputs == other.declared_outputs
        )

    __hash__ = None  # type: ignore[assignment]

    def to_json(self) -> str:
        from tlir.serialize import graph_to_json

        return graph_to_json(self)

    @classmethod
    def from_json(cls, text: str) -> EinsumGraph:
        from tlir.serialize import graph_from_json

        return graph_from_json(text)
