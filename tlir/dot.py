"""A Graphviz (DOT) picture of a graph: `to_dot(graph)` returns the DOT text.

Nodes are boxes labelled with their kind and spec (and attributes); graph inputs and outputs are
small ellipses; every other tensor is the label of the edge that carries it. A loop node's body
is drawn as a `subgraph cluster_*` next to it, joined to the loop box by a dashed edge, so nested
loops show as nested clusters. A custom_vjp node gets two clusters, "body" (operands -> results)
and "grad body" (operands, results, result cotangents -> operand cotangents), each with its own
dashed edge. The output is deterministic: ids follow node and tensor indices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tlir.graph import EinsumGraph, EinsumNode

_KIND_STYLE = {
    "einsum": 'fillcolor="#dbe9f6"',
    "reshape": 'fillcolor="#eeeeee"',
    "elementwise": 'fillcolor="#f4f4dc"',
    "reduce": 'fillcolor="#f6e3d0"',
    "flash": 'fillcolor="#f6d0d0", penwidth=2',
    "loop": 'fillcolor="#d9f0d3", penwidth=2',
    "custom_vjp": 'fillcolor="#e4d9f2", penwidth=2',
}
_BODY_COLOR = {"body": "#4a8a3c", "grad body": "#7a4a9a"}


def escape(text: str) -> str:
    """`text` as the inside of a DOT double-quoted string (newlines become `\\n`)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


def _node_label(node: EinsumNode, shapes: Mapping[int, Sequence[int]] | None) -> str:
    spec_only = node.kind in ("loop", "custom_vjp")  # the spec names the kind
    lines = [node.spec] if spec_only else [str(node.kind), node.spec]
    if node.attrs:
        lines.append(", ".join(f"{k}={v}" for k, v in node.attrs))
    if shapes is not None and all(t in shapes for t in node.outputs) and node.kind != "loop":
        lines.append(" ".join(_shape_text(shapes[t]) for t in node.outputs))
    return "\n".join(lines)


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("  " * depth + text)

    def graph(
        self,
        graph: EinsumGraph,
        prefix: str,
        depth: int,
        shapes: Mapping[int, Sequence[int]] | None,
    ) -> None:
        producer = graph.producers()
        inputs, outputs = graph.inputs, graph.outputs
        for t in inputs:
            label = graph.tensors[t]
            if shapes is not None and t in shapes:
                label += "\n" + _shape_text(shapes[t])
            self.emit(
                depth,
                f'{prefix}t{t} [label="{escape(label)}", shape=ellipse, style=filled, '
                'fillcolor="#ffffff", fontsize=10];',
            )
        for index, node in enumerate(graph.nodes):
            style = _KIND_STYLE.get(node.kind, "")
            label = escape(_node_label(node, shapes))
            self.emit(
                depth,
                f'{prefix}n{index} [label="{label}", shape=box, style="rounded,filled", {style}];',
            )
            if node.kind == "custom_vjp":
                assert node.body is not None and node.grad_body is not None
                self.cluster(node.body, f"{prefix}B{index}_", f"{prefix}n{index}", "body", depth)
                grad = node.grad_body
                self.cluster(grad, f"{prefix}G{index}_", f"{prefix}n{index}", "grad body", depth)
            elif node.body is not None:
                body = node.body
                index_name = body.tensors[body.inputs[0]] if body.inputs else "j"
                title = f"body of {node.spec}: {index_name} in [lo, hi)"
                self.cluster(body, f"{prefix}L{index}_", f"{prefix}n{index}", "body", depth, title)
        for index, node in enumerate(graph.nodes):
            for position, t in enumerate(node.inputs):
                if t in producer:
                    source = f"{prefix}n{producer[t]}"
                    label = f' [label="{escape(graph.tensors[t])}", fontsize=9]'
                elif t in inputs:
                    source, label = f"{prefix}t{t}", ""
                else:
                    continue  # the seed's placeholder operand, which nothing writes
                self.emit(depth, f"{source} -> {prefix}n{index}{label};")
        for t in outputs:
            if t in inputs:
                continue  # drawn already as an input ellipse
            label = graph.tensors[t]
            if shapes is not None and t in shapes:
                label += "\n" + _shape_text(shapes[t])
            self.emit(
                depth,
                f'{prefix}out{t} [label="{escape(label)}", shape=ellipse, peripheries=2, '
                'style=filled, fillcolor="#ffffff", fontsize=10];',
            )
            if t in producer:
                self.emit(depth, f"{prefix}n{producer[t]} -> {prefix}out{t};")

    def cluster(
        self,
        body: EinsumGraph,
        inner: str,
        owner: str,
        role: str,
        depth: int,
        title: str | None = None,
    ) -> None:
        """`body` as a dashed cluster with ids prefixed `inner`, joined to the box `owner` by a
        dashed edge labelled `role` ("body" or "grad body")."""
        name = f"cluster_{inner.rstrip('_')}"
        color = _BODY_COLOR[role]
        self.emit(depth, f"subgraph {name} {{")
        self.emit(
            depth + 1, f'label="{escape(title or role)}"; labeljust=l; style="rounded,dashed";'
        )
        self.emit(depth + 1, f'color="{color}"; fontsize=10;')
        self.graph(body, inner, depth + 1, None)
        self.emit(depth, "}")
        anchor = f"{inner}t{body.inputs[0]}" if body.inputs else f"{inner}n0"
        self.emit(
            depth,
            f'{owner} -> {anchor} [style=dashed, color="{color}", lhead="{name}", '
            f'label="{role}", fontsize=9];',
        )


def to_dot(
    graph: EinsumGraph,
    name: str = "tlir",
    shapes: Mapping[int, Sequence[int]] | None = None,
) -> str:
    """The DOT text of `graph`; `shapes` (from `infer_shapes`) adds shapes to the top level."""
    writer = _Writer()
    writer.emit(0, f'digraph "{escape(name)}" {{')
    writer.emit(1, "compound=true; rankdir=TB; newrank=true;")
    writer.emit(1, 'graph [fontname="Helvetica"];')
    writer.emit(1, 'node [fontname="Helvetica", fontsize=11];')
    writer.emit(1, 'edge [fontname="Helvetica", color="#555555"];')
    writer.graph(graph, "", 1, shapes)
    writer.emit(0, "}")
    return "\n".join(writer.lines) + "\n"
