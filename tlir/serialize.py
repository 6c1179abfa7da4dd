"""JSON forms of a graph: tlir's own, and the Rust crate's serde JSON (tensorlogic-ir).

tlir JSON round-trips exactly: `EinsumGraph.from_json(g.to_json()) == g`. The Rust form is
`{"tensors": [...], "nodes": [{"op": {"Einsum": {"spec": ...}}, "inputs": [...], "outputs": [...],
"metadata": null}], "inputs": [], "outputs": [], "tensor_metadata": {}}` with the op one of
`Einsum {spec}`, `ElemUnary {op}`, `ElemBinary {op}`, `Reduce {op, axes}`. `from_json` reads both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tlir.errors import GraphError, TlirError
from tlir.graph import EinsumGraph, EinsumNode
from tlir.spec import OpSpec

FORMAT = "tlir"
VERSION = 1


def _graph_dict(graph: EinsumGraph) -> dict[str, Any]:
    nodes = []
    for node in graph.nodes:
        entry: dict[str, Any] = {
            "kind": node.kind,
            "spec": node.spec,
            "inputs": list(node.inputs),
            "outputs": list(node.outputs),
        }
        if node.attrs:
            entry["attrs"] = dict(node.attrs)
        if node.body is not None:
            entry["body"] = _graph_dict(node.body)
        if node.grad_body is not None:
            entry["grad_body"] = _graph_dict(node.grad_body)
        nodes.append(entry)
    return {
        "tensors": list(graph.tensors),
        "inputs": list(graph.declared_inputs),
        "outputs": list(graph.declared_outputs),
        "nodes": nodes,
    }


def graph_to_json(graph: EinsumGraph) -> str:
    return json.dumps({"format": FORMAT, "version": VERSION, **_graph_dict(graph)}, indent=1)


def graph_to_rust_json(graph: EinsumGraph) -> str:
    """The Rust crate's serde form. Loop nodes have no Rust counterpart and raise GraphError."""
    nodes = []
    for index, node in enumerate(graph.nodes):
        nodes.append(
            {
                "op": _rust_op(node, index),
                "inputs": list(node.inputs),
                "outputs": list(node.outputs),
                "metadata": None,
            }
        )
    document = {
        "tensors": list(graph.tensors),
        "nodes": nodes,
        "inputs": list(graph.declared_inputs),
        "outputs": list(graph.declared_outputs),
        "tensor_metadata": {},
    }
    return json.dumps(document, indent=1)


def _rust_op(node: EinsumNode, index: int) -> dict[str, Any]:
    parsed = node.parsed
    if node.kind in ("loop", "custom_vjp"):
        raise GraphError(f"node {index} {node.spec!r}: {node.kind} nodes have no Rust JSON form")
    if isinstance(parsed, OpSpec) and not parsed.labelled:
        if node.kind == "reduce":
            return {"Reduce": {"op": parsed.op, "axes": list(parsed.args)}}
        if len(node.inputs) not in (1, 2):
            raise GraphError(
                f"node {index} {node.spec!r}: the Rust crate has unary and binary elementwise "
                f"ops only, found {len(node.inputs)} operands"
            )
        arity_name = "ElemUnary" if len(node.inputs) == 1 else "ElemBinary"
        return {arity_name: {"op": node.spec}}
    return {"Einsum": {"spec": node.spec}}


def graph_from_json(text: str | bytes) -> EinsumGraph:
    """Read tlir JSON or the Rust crate's JSON; anything else raises GraphError."""
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as error:
        raise GraphError(f"not valid JSON: {error}") from None
    except RecursionError:
        raise GraphError("not valid JSON: nested too deeply to read") from None
    if not isinstance(document, dict):
        raise GraphError(f"a graph's JSON must be an object, found {type(document).__name__}")
    try:
        if document.get("format") == FORMAT:
            if document.get("version") != VERSION:
                raise GraphError(
                    f"tlir JSON version {document.get('version')!r}; this tlir reads {VERSION}"
                )
            return _graph_from_dict(document, _tlir_node)
        return _graph_from_dict(document, _rust_node)
    except TlirError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise GraphError(f"malformed graph JSON: {type(error).__name__}: {error}") from None


def _graph_from_dict(
    document: dict[str, Any], read_node: Callable[[dict[str, Any]], EinsumNode]
) -> EinsumGraph:
    for key in ("tensors", "nodes"):
        if not isinstance(document.get(key), list):
            raise GraphError(f"graph JSON needs a list {key!r}; found {document.get(key)!r}")
    graph = EinsumGraph()
    for name in document["tensors"]:
        if not isinstance(name, str):
            raise GraphError(f"tensor names must be strings, found {name!r}")
        graph.add_tensor(name)
    for index, entry in enumerate(document["nodes"]):
        if not isinstance(entry, dict):
            raise GraphError(f"node {index} must be an object, found {entry!r}")
        try:
            graph.add_node(read_node(entry))
        except TlirError as error:
            raise type(error)(f"node {index} of the JSON: {error}") from None
    for t in document.get("inputs") or []:
        graph.add_input(t)
    for t in document.get("outputs") or []:
        graph.add_output(t)
    return graph


def _tlir_node(entry: dict[str, Any]) -> EinsumNode:
    bodies = {
        key: _graph_from_dict(entry[key], _tlir_node) if entry.get(key) is not None else None
        for key in ("body", "grad_body")
    }
    return EinsumNode(
        entry["spec"],
        tuple(entry["inputs"]),
        tuple(entry["outputs"]),
        kind=entry["kind"],
        attrs=tuple((entry.get("attrs") or {}).items()),
        **bodies,
    )


def _rust_node(entry: dict[str, Any]) -> EinsumNode:
    op = entry["op"]
    if not isinstance(op, dict) or len(op) != 1:
        raise GraphError(
            f"Rust node op must be one of Einsum, ElemUnary, ElemBinary, Reduce; found {op!r}"
        )
    ((variant, fields),) = op.items()
    inputs, outputs = tuple(entry["inputs"]), tuple(entry["outputs"])
    if variant == "Einsum":
        return EinsumNode(fields["spec"], inputs, outputs)
    if variant in ("ElemUnary", "ElemBinary"):
        return EinsumNode(fields["op"], inputs, outputs, kind="elementwise")
    if variant == "Reduce":
        node = EinsumNode.reduce(fields["op"], fields["axes"], inputs[0], outputs[0])
        return EinsumNode(node.spec, inputs, outputs, kind="reduce")
    raise GraphError(
        f"unknown Rust op {variant!r}; expected Einsum, ElemUnary, ElemBinary or Reduce"
    )
