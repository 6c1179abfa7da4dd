"""`tlir.dot.to_dot`: deterministic DOT text, escaped labels, loop bodies as nested clusters."""

from __future__ import annotations

import re

import tlir
from passes import PassManager
from tlir import EinsumGraph, EinsumNode
from tlir.dot import escape, to_dot


def _flash_graph() -> EinsumGraph:
    graph = EinsumGraph()
    for name in ("Q", "K", "V"):
        graph.add_tensor(name)
    config = tlir.FlashAttentionConfig(32, 2).with_causal(True).with_block_sizes(16, 8)
    tlir.FlashAttention(config).build_flash_graph(graph)
    return graph


def test_escape() -> None:
    assert escape('say "hi"\\n\nnext') == 'say \\"hi\\"\\\\n\\nnext'


def test_small_graph_golden() -> None:
    graph = EinsumGraph()
    a, b, c, d = (graph.add_tensor(n) for n in ("a", "b", 'c"quoted', "d"))
    graph.add_node(EinsumNode("ij,jk->ik", (a, b), (c,), attrs=(("acc", "float32"),)))
    graph.add_node(EinsumNode.elem_unary("exp", c, d))
    text = to_dot(graph, "g", shapes={a: (2, 3), b: (3, 4), c: (2, 4), d: (2, 4)})
    body = [line.strip() for line in text.splitlines()[5:-1]]
    assert body == [
        't0 [label="a\\n[2,3]", shape=ellipse, style=filled, fillcolor="#ffffff", fontsize=10];',
        't1 [label="b\\n[3,4]", shape=ellipse, style=filled, fillcolor="#ffffff", fontsize=10];',
        (
            'n0 [label="einsum\\nij,jk->ik\\nacc=float32\\n[2,4]", shape=box, '
            'style="rounded,filled", fillcolor="#dbe9f6"];'
        ),
        (
            'n1 [label="elementwise\\nexp\\n[2,4]", shape=box, style="rounded,filled", '
            'fillcolor="#f4f4dc"];'
        ),
        "t0 -> n0;",
        "t1 -> n0;",
        'n0 -> n1 [label="c\\"quoted", fontsize=9];',
        (
            'out3 [label="d\\n[2,4]", shape=ellipse, peripheries=2, style=filled, '
            'fillcolor="#ffffff", fontsize=10];'
        ),
        "n1 -> out3;",
    ]


def test_loops_are_nested_clusters_and_output_is_deterministic() -> None:
    lowered = PassManager().run(_flash_graph())
    text = to_dot(lowered)
    assert text == to_dot(lowered)
    clusters = re.findall(r"subgraph (cluster_\w+) \{", text)
    assert len(clusters) == 2
    outer, inner = sorted(clusters, key=len)
    assert inner.startswith(outer + "_")  # the key-tile loop sits inside the query-tile loop
    assert text.count("{") == text.count("}")
    for cluster in clusters:
        assert f'lhead="{cluster}"' in text
    ids = re.findall(r"^\s*(\w+) \[label=", text, re.MULTILINE)
    assert len(ids) == len(set(ids))
