"""Pattern rewriting: a pattern looks at one node and returns a `Replacement` or None.

`apply_patterns` walks the graph, replaces matched nodes in place (same position, same result
tensors), and repeats until nothing matches, with an iteration cap that raises `PassError`
naming the pattern. It never edits its input: each sweep builds a new graph.

`NodeBuilder` is how a pattern writes its replacement: it hands out new tensor ids (numbered
after the graph's tensors) with readable, unique names, and collects nodes in order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tlir import EinsumGraph, EinsumNode, PassError, TlirError
from tlir.walk import regions


@dataclass(frozen=True)
class Replacement:
    """New tensors (names, numbered from the graph's tensor count) and the nodes replacing one."""

    tensors: tuple[str, ...]
    nodes: tuple[EinsumNode, ...]


class Pattern(Protocol):
    name: str

    def match(self, node: EinsumNode, graph: EinsumGraph) -> Replacement | None: ...


class NodeBuilder:
    """Builds a replacement (or a loop body) node by node, naming tensors `<prefix>.<name>`."""

    def __init__(self, first_tensor: int, prefix: str, taken: Iterable[str] = ()) -> None:
        self.first_tensor = first_tensor
        self.prefix = prefix
        self.names: list[str] = []
        self.nodes: list[EinsumNode] = []
        self._taken = set(taken)

    def tensor(self, name: str) -> int:
        full = f"{self.prefix}.{name}" if self.prefix else name
        unique, n = full, 1
        while unique in self._taken:
            n += 1
            unique = f"{full}{n}"
        self._taken.add(unique)
        self.names.append(unique)
        return self.first_tensor + len(self.names) - 1

    def node(
        self,
        spec: str,
        inputs: Sequence[int],
        name: str | None = None,
        *,
        kind: str | None = None,
        attrs: Sequence[tuple[str, str]] = (),
        outputs: Sequence[int] | None = None,
        body: EinsumGraph | None = None,
        grad_body: EinsumGraph | None = None,
    ) -> int:
        """Append a node; returns its (first) result, a new tensor called `name` by default."""
        if outputs is None:
            outputs = [self.tensor(name or "t")]
        self.nodes.append(
            EinsumNode(
                spec,
                tuple(inputs),
                tuple(outputs),
                kind=kind,
                attrs=tuple(attrs),
                body=body,
                grad_body=grad_body,
            )
        )
        return outputs[0]

    def replacement(self) -> Replacement:
        return Replacement(tuple(self.names), tuple(self.nodes))

    def graph(self, inputs: Sequence[int], outputs: Sequence[int]) -> EinsumGraph:
        """The collected tensors and nodes as a standalone graph (a loop body)."""
        assert self.first_tensor == 0, "a standalone graph numbers its tensors from 0"
        graph = EinsumGraph()
        for name in self.names:
            graph.add_tensor(name)
        for node in self.nodes:
            graph.add_node(node)
        for t in inputs:
            graph.add_input(t)
        for t in outputs:
            graph.add_output(t)
        return graph


@dataclass
class RewriteLog:
    """What a rewrite did: (pattern name, node index, spec) per applied match."""

    applied: list[tuple[str, int, str]] = field(default_factory=list)


def _splice(graph: EinsumGraph, index: int, replacement: Replacement) -> EinsumGraph:
    new = EinsumGraph()
    for name in graph.tensors + list(replacement.tensors):
        new.add_tensor(name)
    for position, node in enumerate(graph.nodes):
        if position == index:
            for replacing in replacement.nodes:
                new.add_node(replacing)
        else:
            new.add_node(node)
    # Declare the original interface: a replacement may leave results that nothing reads
    # (a loop's running max), which must not turn into graph outputs.
    for t in graph.inputs:
        new.add_input(t)
    for t in graph.outputs:
        new.add_output(t)
    return new


def apply_patterns(
    graph: EinsumGraph,
    patterns: Sequence[Pattern],
    max_iterations: int = 1000,
    log: RewriteLog | None = None,
) -> EinsumGraph:
    """Rewrite to a fixed point, inside loop and custom_vjp bodies too.

    Returns `graph` itself when no pattern matches anywhere.
    """
    if max_iterations < 1:
        raise PassError(f"apply_patterns: max_iterations must be >= 1, found {max_iterations}")
    current = graph
    found = None
    for _ in range(max_iterations):
        found = _first_match(current, patterns)
        if found is None:
            return _rewrite_bodies(current, patterns, max_iterations, log)
        index, pattern, replacement = found
        if log is not None:
            log.applied.append((pattern.name, index, current.nodes[index].spec))
        current = _splice(current, index, replacement)
    raise PassError(
        f"pattern {found[1].name!r} still matched after {max_iterations} rewrites "
        f"(last at node {found[0]} {current.nodes[found[0]].spec!r}); it does not converge"
    )


def _rewrite_bodies(
    graph: EinsumGraph, patterns: Sequence[Pattern], max_iterations: int, log: RewriteLog | None
) -> EinsumGraph:
    """The graph with its nodes' bodies rewritten; `graph` itself when no body changed."""
    nodes = []
    for node in graph.nodes:
        bodies = {}
        for role, body in regions(node):
            rewritten = apply_patterns(body, patterns, max_iterations, log)
            if rewritten is not body:
                bodies[role] = rewritten
        nodes.append(dataclasses.replace(node, **bodies) if bodies else node)
    if all(new is old for new, old in zip(nodes, graph.nodes)):
        return graph
    rewritten_graph = graph.copy()
    rewritten_graph.nodes = nodes
    return rewritten_graph


def _first_match(
    graph: EinsumGraph, patterns: Sequence[Pattern]
) -> tuple[int, Pattern, Replacement] | None:
    for index, node in enumerate(graph.nodes):
        for pattern in patterns:
            try:
                replacement = pattern.match(node, graph)
            except TlirError as error:
                raise PassError(
                    f"pattern {pattern.name!r} refused node {index} {node.spec!r}: {error}"
                ) from None
            if replacement is not None:
                return index, pattern, replacement
    return None
