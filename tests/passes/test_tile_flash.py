"""Golden rewrites for tile-flash (IR text in, exact IR text out) and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

import passes
import tlir
from tests.reference import flash_graph, flash_spec

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(
    "source, pass_, expected",
    [
        ("flash_causal.in.txt", passes.TileFlash(), "flash_causal.tile-flash.txt"),
        (
            "flash_gqa_lse.in.txt",
            passes.TileFlash(block_q=0),
            "flash_gqa_lse.tile-flash-block_q0.txt",
        ),
    ],
    ids=["causal-nested", "gqa-lse-window-all-queries"],
)
def test_golden_rewrite(source, pass_, expected):
    graph = tlir.parse_text((GOLDEN / source).read_text())
    rewritten = pass_.run(graph)
    assert str(rewritten) + "\n" == (GOLDEN / expected).read_text()
    assert str(tlir.parse_text(str(rewritten))) == str(rewritten)
    assert not any(node.kind == "flash" for node in rewritten.nodes)


def test_no_match_returns_the_graph_unchanged():
    text = (GOLDEN / "no_flash.in.txt").read_text()
    graph = tlir.parse_text(text)
    assert passes.TileFlash().run(graph) is graph
    assert str(graph) + "\n" == text


def test_pass_never_mutates_its_input():
    graph = flash_graph(flash_spec("g", 32, 16, causal=True, lse=True))
    before = graph.to_json()
    passes.TileFlash().run(graph)
    passes.PassManager().run(graph)
    assert graph.to_json() == before


def test_rewrite_is_deterministic():
    graph = flash_graph(flash_spec("h", 64, 64, window=(5, 7)))
    assert str(passes.TileFlash().run(graph)) == str(passes.TileFlash().run(graph))


def test_every_flash_node_of_a_builder_graph_is_tiled_and_shapes_infer():
    graph = tlir.EinsumGraph()
    for name in "QKV":
        graph.add_tensor(name)
    config = tlir.FlashAttentionConfig(64, 4).with_causal(True).with_kv_heads(2)
    tlir.FlashAttention(config).build_flash_graph(graph)
    tiled = passes.PassManager().run(graph)
    assert [n.kind for n in tiled.nodes].count("flash") == 0
    shapes = tlir.infer_shapes(tiled, {"Q": (2, 33, 64), "K": (2, 47, 32), "V": (2, 47, 32)})
    assert shapes[tiled.outputs[0]] == (2, 33, 64)


def test_block_kv_override_changes_the_tiles():
    graph = flash_graph(flash_spec("h", 64, 64))
    text = str(passes.TileFlash(block_kv=256).run(graph))
    assert "tile(k,256)" in text and "tile(k,64)" not in text


def test_dropout_takes_the_key_into_both_bodies():
    graph = flash_graph(flash_spec("h", 64, 64, dropout=0.1))
    (node,) = passes.TileFlash().run(graph).nodes
    assert node.kind == "custom_vjp" and len(node.inputs) == 4
    assert "dropout_keep(0.1)" in str(node.body) and "dropout_keep(0.1)" in str(node.grad_body)
    assert len(node.grad_body.outputs) == 4  # dq, dk, dv and the key's (empty) cotangent


def test_causal_and_window_skip_tiles_but_plain_attention_does_not():
    causal = str(passes.TileFlash().run(flash_graph(flash_spec("h", 64, 64, causal=True))))
    assert "end_kv_tile(64,64,inf,0)" in causal and "first_q_tile(64,64,inf,0)" in causal
    window = str(passes.TileFlash().run(flash_graph(flash_spec("h", 64, 64, window=(3, 5)))))
    assert "first_kv_tile(64,64,3,5)" in window


@pytest.mark.parametrize("option, value", [("block_kv", 0), ("block_q", -1), ("block_kv", "8")])
def test_bad_options_are_pass_errors(option, value):
    with pytest.raises(tlir.PassError, match=rf"{option} must be an integer"):
        passes.TileFlash(**{option: value})


def test_flash_nodes_inside_loop_bodies_are_rewritten():
    body = tlir.parse_text(
        """graph(%j, %q, %k, %v, %acc) -> (%sum) {
  %o = flash "flash_bhqd,bhkd,bhkv->bhqv_8_8" (%q, %k, %v)
  %sum = elementwise "add:bhqv,bhqv->bhqv" (%acc, %o)
}"""
    )
    graph = tlir.EinsumGraph()
    q, k, v, lo, hi, acc0, out = (
        graph.add_tensor(n) for n in ("q", "k", "v", "lo", "hi", "a", "o")
    )
    graph.add_node(tlir.EinsumNode("iconst(0):->", (), (lo,)))
    graph.add_node(tlir.EinsumNode("iconst(2):->", (), (hi,)))
    graph.add_node(tlir.EinsumNode("full(0):bhqd->bhqd", (q,), (acc0,)))
    graph.add_node(tlir.EinsumNode.loop(1, (lo, hi, q, k, v, acc0), (out,), body))
    rewritten = passes.PassManager().run(graph)
    assert " flash " not in str(rewritten) and "custom_vjp" in str(rewritten)
    assert " flash " in str(graph)  # the input is untouched
