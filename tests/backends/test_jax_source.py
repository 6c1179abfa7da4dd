"""`backends.jax_source.render`: the Python/JAX text of a lowered graph runs and matches
`backends.jax` (what it claims to show) and the float64 reference on the original graph.

Legend: b batch, h query heads, g kv heads, q/k positions, d head dim, v value dim.
"""

from __future__ import annotations

import numpy as np
import pytest

import tlir
from backends import jax as jax_backend
from backends import numpy as numpy_backend
from backends.jax_source import aligned, render
from passes import PassManager, TileFlash
from tlir import EinsumGraph, EinsumNode, LoweringError


def _qkv_graph() -> EinsumGraph:
    graph = EinsumGraph()
    for name in ("Q", "K", "V"):
        graph.add_tensor(name)
    return graph


def _seed_flash(config: tlir.FlashAttentionConfig | tlir.FlashAttentionV2Config) -> EinsumGraph:
    graph = _qkv_graph()
    tlir.FlashAttention(config).build_flash_graph(graph)
    return graph


def _lse_graph() -> EinsumGraph:
    graph = _qkv_graph()
    out, lse = graph.add_tensor("out"), graph.add_tensor("lse")
    spec = tlir.format_flash(
        ("b", "h", "q", "d"),
        ("b", "h", "k", "d"),
        ("b", "h", "k", "v"),
        ("b", "h", "q", "v"),
        16,
        8,
        causal=True,
        lse=True,
    )
    graph.add_node(EinsumNode(spec, (0, 1, 2), (out, lse)))
    return graph


def _mha_graph() -> EinsumGraph:
    graph = _qkv_graph()
    tlir.MultiHeadAttention(tlir.FlashAttentionConfig(32, 2)).build_mha_graph(graph)
    return graph


base = tlir.FlashAttentionConfig(32, 2).with_block_sizes(16, 8)
CASES = [
    (
        "sq=21-skv=21-bq=16-bk=8-causal",
        _seed_flash(base.with_causal(True)),
        [(1, 21, 32)] * 3,
        None,
    ),
    ("sq=24-skv=24-bq=16-bk=8", _seed_flash(base), [(2, 24, 32)] * 3, None),
    (
        "gqa-g=1-window=5",
        _seed_flash(tlir.FlashAttentionV2Config(32, 2, base=base.with_kv_heads(1)).with_window(5)),
        [(1, 19, 32), (1, 19, 16), (1, 19, 16)],
        None,
    ),
    ("lse-sq=13-skv=30", _lse_graph(), [(1, 2, 13, 8), (1, 2, 30, 8), (1, 2, 30, 8)], None),
    ("bq=0-bk=8", _seed_flash(base.with_causal(True)), [(1, 21, 32)] * 3, TileFlash(0, 8)),
    ("unfused-seed-ops", _mha_graph(), [(1, 9, 32)] * 3, None),
]


@pytest.mark.parametrize("graph, shapes, tile", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rendered_source_matches_the_jax_backend(
    graph: EinsumGraph, shapes: list[tuple[int, ...]], tile: TileFlash | None
) -> None:
    lowered = PassManager(None if tile is None else [tile, "dead-code"]).run(graph)
    source = render(lowered, tlir.infer_shapes(lowered, dict(enumerate(shapes))))
    namespace: dict[str, object] = {}
    exec(compile(source, "<rendered>", "exec"), namespace)  # noqa: S102 (our own output)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    rendered = namespace["graph"](*inputs)  # type: ignore[operator]
    lowered_fn = jax_backend.lower(lowered)
    for got, want in zip(rendered, lowered_fn(*inputs)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    for got, want in zip(rendered, numpy_backend.run(graph, *inputs)):
        np.testing.assert_allclose(np.asarray(got), want, atol=3e-5)


def test_render_is_deterministic_and_names_are_python() -> None:
    lowered = PassManager().run(_seed_flash(base.with_causal(True)))
    source = render(lowered)
    assert source == render(lowered)
    assert "(acc, max_, sum_) = lax.fori_loop(lo, hi, step_acc, (acc0, max0, sum0))" in source
    assert "(acc_2, max_2, sum_2) = carry" in source  # the inner body's carry, renamed
    compile(source, "<rendered>", "exec")


def test_render_refuses_flash_nodes() -> None:
    with pytest.raises(LoweringError, match=r"flash node 'flash_.*' is left: run the 'tile-flash'"):
        render(_seed_flash(base))


@pytest.mark.parametrize(
    "term, target, expected",
    [
        ("bhq", "bhq", "x"),
        ("", "bhqk", "x"),
        ("bhq", "bhqk", "x[:, :, :, None]"),
        ("qk", "bhqk", "x[None, None]"),
        ("hb", "bh", "jnp.transpose(x, (1, 0))"),
        ("kq", "bhqk", "jnp.transpose(x, (1, 0))[None, None]"),
    ],
)
def test_aligned(term: str, target: str, expected: str) -> None:
    assert aligned("x", tuple(term), tuple(target)) == expected
