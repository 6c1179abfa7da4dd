"""`tlir.dot.to_dot`: deterministic DOT text, escaped labels, loop bodies as nested clusters,
a custom_vjp node's body and grad body as two clusters."""

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


CUSTOM_VJP = """\
graph(%a) -> (%b) {
  %b = custom_vjp "custom_vjp" (%a) {
    graph(%x) -> (%y) {
      %y = elementwise "exp:i->i" (%x)
    }
  } grad {
    graph(%x, %y, %dy) -> (%dx) {
      %dx = elementwise "mul:i,i->i" (%y, %dy)
    }
  }
}"""


def test_custom_vjp_golden() -> None:
    graph = tlir.parse_text(CUSTOM_VJP)
    text = to_dot(graph, "g", shapes=tlir.infer_shapes(graph, {"a": (3,)}))
    body = [line.strip() for line in text.splitlines()[5:-1]]
    ellipse = 'shape=ellipse, style=filled, fillcolor="#ffffff", fontsize=10];'
    result = 'shape=ellipse, peripheries=2, style=filled, fillcolor="#ffffff", fontsize=10];'
    assert body == [
        f't0 [label="a\\n[3]", {ellipse}',
        (
            'n0 [label="custom_vjp\\n[3]", shape=box, style="rounded,filled", '
            'fillcolor="#e4d9f2", penwidth=2];'
        ),
        "subgraph cluster_B0 {",
        'label="body"; labeljust=l; style="rounded,dashed";',
        'color="#4a8a3c"; fontsize=10;',
        f'B0_t0 [label="x", {ellipse}',
        (
            'B0_n0 [label="elementwise\\nexp:i->i", shape=box, style="rounded,filled", '
            'fillcolor="#f4f4dc"];'
        ),
        "B0_t0 -> B0_n0;",
        f'B0_out1 [label="y", {result}',
        "B0_n0 -> B0_out1;",
        "}",
        'n0 -> B0_t0 [style=dashed, color="#4a8a3c", lhead="cluster_B0", label="body", fontsize=9];',
        "subgraph cluster_G0 {",
        'label="grad body"; labeljust=l; style="rounded,dashed";',
        'color="#7a4a9a"; fontsize=10;',
        f'G0_t0 [label="x", {ellipse}',
        f'G0_t1 [label="y", {ellipse}',
        f'G0_t2 [label="dy", {ellipse}',
        (
            'G0_n0 [label="elementwise\\nmul:i,i->i", shape=box, style="rounded,filled", '
            'fillcolor="#f4f4dc"];'
        ),
        "G0_t1 -> G0_n0;",
        "G0_t2 -> G0_n0;",
        f'G0_out3 [label="dx", {result}',
        "G0_n0 -> G0_out3;",
        "}",
        (
            'n0 -> G0_t0 [style=dashed, color="#7a4a9a", lhead="cluster_G0", '
            'label="grad body", fontsize=9];'
        ),
        "t0 -> n0;",
        f'out1 [label="b\\n[3]", {result}',
        "n0 -> out1;",
    ]


def test_tiled_flash_is_a_custom_vjp_with_nested_loop_clusters() -> None:
    lowered = PassManager().run(_flash_graph())
    text = to_dot(lowered)
    assert text == to_dot(lowered)
    clusters = re.findall(r"subgraph (cluster_\w+) \{", text)
    # body: the query-tile loop around two key-tile loops (the tiles seen whole, then the
    # diagonal's); grad body: key tiles around query tiles
    assert len(clusters) == 7
    body, grad = (
        sorted(c for c in clusters if c.startswith(p)) for p in ("cluster_B", "cluster_G")
    )
    outer, middle, *inner = body
    assert middle.startswith(outer + "_L") and len(inner) == 2
    assert all(c.startswith(middle + "_L") for c in inner)
    outer, middle, inner = grad
    assert middle.startswith(outer + "_L") and inner.startswith(middle + "_L")
    assert f'lhead="{body[0]}", label="body"' in text
    assert f'lhead="{grad[0]}", label="grad body"' in text
    assert text.count('label="custom_vjp"') == 1
    assert text.count("{") == text.count("}")
    for cluster in clusters:
        assert f'lhead="{cluster}"' in text
    ids = re.findall(r"^\s*(\w+) \[label=", text, re.MULTILINE)
    assert len(ids) == len(set(ids))
