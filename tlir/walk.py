"""Walking nested graphs: every node of a graph and of the bodies inside it, and how a node's
operands bind to its bodies' parameters.

A loop node's body takes (j, invariants..., carried...) for the operands (lo, hi, invariants...,
carried...): operand i >= 2 binds body input i - 1, and lo, hi bind none. A custom_vjp node's
body takes its operands in order, and its grad body takes (operands, results, cotangents), so
the operands bind its first inputs. Every walker of tlir, passes, backends and the app uses these
two functions instead of its own recursion.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tlir.graph import EinsumGraph, EinsumNode

REGIONS = ("body", "grad_body")


@dataclass(frozen=True)
class Visit:
    """One node met by `walk`: its graph, its index there, and where that graph is."""

    graph: EinsumGraph
    index: int
    node: EinsumNode
    where: str  # "" at the top; "node 3 body: " inside the body of node 3, and so on

    @property
    def name(self) -> str:
        """`node 3 body: node 0 'spec'`, as errors and reports name a node."""
        return f"{self.where}node {self.index} {self.node.spec!r}"


def regions(node: EinsumNode) -> list[tuple[str, EinsumGraph]]:
    """The node's nested graphs, as (role, graph): "body", then "grad_body"."""
    return [(role, getattr(node, role)) for role in REGIONS if getattr(node, role) is not None]


def walk(graph: EinsumGraph, where: str = "") -> Iterator[Visit]:
    """Every node of `graph` in list order, each followed by the nodes of its bodies."""
    for index, node in enumerate(graph.nodes):
        yield Visit(graph, index, node, where)
        for role, body in regions(node):
            yield from walk(body, f"{where}node {index} {role.replace('_', ' ')}: ")


def bindings(node: EinsumNode, role: str = "body") -> list[tuple[int, int]]:
    """(operand tensor, parameter of the node's `role` graph) for each operand that binds one."""
    body = getattr(node, role)
    if body is None:
        return []
    if node.kind == "loop":
        return list(zip(node.inputs[2:], body.inputs[1:]))
    return list(zip(node.inputs, body.inputs))
