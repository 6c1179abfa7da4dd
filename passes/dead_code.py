"""dead-code: drop nodes whose results no graph output depends on.

As torch.fx's `eliminate_dead_code`; a graph with nothing to drop is returned as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import networkx as nx

from tlir import EinsumGraph


@dataclass(frozen=True)
class DeadCode:
    name: ClassVar[str] = "dead-code"

    def run(self, graph: EinsumGraph) -> EinsumGraph:
        flow = graph.to_networkx()
        needed: set[tuple[str, int]] = set()
        for t in graph.outputs:
            needed |= nx.ancestors(flow, ("tensor", t))
        keep = [i for i in range(len(graph.nodes)) if ("node", i) in needed]
        if len(keep) == len(graph.nodes):
            return graph
        new = EinsumGraph()
        for name in graph.tensors:
            new.add_tensor(name)
        for i in keep:
            new.add_node(graph.nodes[i])
        for t in graph.inputs:
            new.add_input(t)
        for t in graph.outputs:
            new.add_output(t)
        return new
