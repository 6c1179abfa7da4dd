"""`backends.jax_source.render`: the Python/JAX text of a lowered graph runs and matches
`backends.jax` (what it claims to show) and the float64 reference on the original graph:
outputs, dropout masks for the same PRNG key, and gradients through the rendered custom_vjp.

Legend: b batch, h query heads, g kv heads, q/k positions, d head dim, v value dim.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tlir
from backends import jax as jax_backend
from backends import numpy as numpy_backend
from backends.jax_source import aligned, render
from passes import PassManager, TileFlash
from tests.reference import flash_graph, flash_spec
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
    # tiles longer than the sequences: one tile of each whole sequence
    (
        "sq=5-skv=7-bq=16-bk=8-causal",
        _lse_graph(),
        [(1, 2, 5, 8), (1, 2, 7, 8), (1, 2, 7, 8)],
        None,
    ),
    ("unfused-seed-ops", _mha_graph(), [(1, 9, 32)] * 3, None),
]


def _rendered(lowered: EinsumGraph, shapes: list[tuple[int, ...]]) -> Callable[..., Any]:
    """The `graph` function that the rendered source of `lowered` defines."""
    source = render(lowered, tlir.infer_shapes(lowered, dict(enumerate(shapes))))
    namespace: dict[str, object] = {}
    exec(compile(source, "<rendered>", "exec"), namespace)  # noqa: S102 (our own output)
    return namespace["graph"]  # type: ignore[return-value]


def _lower(graph: EinsumGraph, tile: TileFlash | None) -> EinsumGraph:
    return PassManager(None if tile is None else [tile, "dead-code"]).run(graph)


@pytest.mark.parametrize("graph, shapes, tile", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rendered_source_matches_the_jax_backend(
    graph: EinsumGraph, shapes: list[tuple[int, ...]], tile: TileFlash | None
) -> None:
    lowered = _lower(graph, tile)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    rendered = _rendered(lowered, shapes)(*inputs)
    lowered_fn = jax_backend.lower(lowered)
    for got, want in zip(rendered, lowered_fn(*inputs)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    for got, want in zip(rendered, numpy_backend.run(graph, *inputs)):
        np.testing.assert_allclose(np.asarray(got), want, atol=3e-5)


# (id, flash spec, shapes of q, k, v, tile-flash options or None for the spec's blocks)
DROPOUT_CASES = [
    (
        "gqa-sq=21-skv=19-bq=16-bk=8-causal-dropout0.2-lse",
        flash_spec("g", 16, 8, causal=True, lse=True, dropout=0.2),
        [(1, 4, 21, 8), (1, 2, 19, 8), (1, 2, 19, 8)],
        None,
    ),
    (
        "sq=13-skv=30-bq=0-bk=8-window3x2-dropout0.5",
        flash_spec("h", 16, 8, window=(3, 2), dropout=0.5),
        [(2, 2, 13, 8), (2, 2, 30, 8), (2, 2, 30, 8)],
        TileFlash(0, 8),
    ),
]


def _qkv(shapes: list[tuple[int, ...]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s, dtype=np.float32) for s in shapes]


@pytest.mark.parametrize(
    "spec, shapes, tile", [c[1:] for c in DROPOUT_CASES], ids=[c[0] for c in DROPOUT_CASES]
)
def test_rendered_dropout_matches_the_jax_backend_for_the_same_key(
    spec: str, shapes: list[tuple[int, ...]], tile: TileFlash | None
) -> None:
    lowered = _lower(flash_graph(spec), tile)
    rendered = jax.jit(_rendered(lowered, [*shapes, ()]))
    lowered_fn = jax.jit(jax_backend.lower(lowered))
    q, k, v = _qkv(shapes)
    typed, raw = jax.random.key(7), jax.random.key_data(jax.random.key(7))
    results = {}
    for name, key in (("typed", typed), ("raw", raw)):
        results[name] = rendered(q, k, v, key)
        for got, want in zip(results[name], lowered_fn(q, k, v, key)):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    # the raw uint32[2] data of a key draws the same masks as the typed key
    np.testing.assert_array_equal(results["typed"][0], results["raw"][0])
    # the masks depend on the key: another key drops other probabilities
    other = rendered(q, k, v, jax.random.key(8))[0]
    assert not np.allclose(np.asarray(other), np.asarray(results["typed"][0]))


GRAD_CASES = [
    ("seed-causal-bq=16-bk=8", _seed_flash(base.with_causal(True)), [(1, 21, 32)] * 3, None),
    (
        "gqa-window=5-bq=0-bk=8",
        _seed_flash(tlir.FlashAttentionV2Config(32, 2, base=base.with_kv_heads(1)).with_window(5)),
        [(1, 19, 32), (1, 19, 16), (1, 19, 16)],
        TileFlash(0, 8),
    ),
    ("lse-sq=13-skv=30", _lse_graph(), [(1, 2, 13, 8), (1, 2, 30, 8), (1, 2, 30, 8)], None),
    *((name, flash_graph(spec), [*shapes, ()], tile) for name, spec, shapes, tile in DROPOUT_CASES),
]


@pytest.mark.parametrize(
    "graph, shapes, tile", [c[1:] for c in GRAD_CASES], ids=[c[0] for c in GRAD_CASES]
)
def test_rendered_gradients_match_the_jax_backend(
    graph: EinsumGraph, shapes: list[tuple[int, ...]], tile: TileFlash | None
) -> None:
    """jax.grad through the rendered custom_vjp (its bwd is the grad body) equals jax.grad of
    `backends.jax.lower`, for every float input and every output (with random weights)."""
    lowered = _lower(graph, tile)
    rendered = _rendered(lowered, shapes)
    lowered_fn = jax_backend.lower(lowered)
    floats = [s for s in shapes if s != ()]
    inputs = _qkv(floats, seed=1)
    key = [jax.random.key(3)] if len(floats) < len(shapes) else []
    out_shapes = [np.shape(x) for x in lowered_fn(*inputs, *key)]
    rng = np.random.default_rng(2)
    weights = [rng.standard_normal(s).astype(np.float32) for s in out_shapes]

    def loss(fn: Callable[..., Any]) -> Callable[..., Any]:
        def scalar(*xs: Any) -> Any:
            return sum(jnp.sum(o * w) for o, w in zip(fn(*xs, *key), weights))

        return scalar

    argnums = tuple(range(len(floats)))
    got = jax.jit(jax.grad(loss(rendered), argnums))(*inputs)
    want = jax.jit(jax.grad(loss(lowered_fn), argnums))(*inputs)
    for g, w in zip(got, want):
        assert np.abs(np.asarray(w)).max() > 0
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "graph, shapes, tile",
    [c[1:] for c in CASES] + [c[1:] for c in GRAD_CASES[-2:]],
    ids=[c[0] for c in CASES] + [c[0] for c in GRAD_CASES[-2:]],
)
def test_shape_comments_are_the_shapes_the_code_computes(
    graph: EinsumGraph, shapes: list[tuple[int, ...]], tile: TileFlash | None
) -> None:
    """Each `# [dims]` comment (from infer_shapes) holds, forward and backward: checked by an
    assert after the line, while jax.eval_shape traces the function and its gradient."""
    lowered = _lower(graph, tile)
    source = render(lowered, tlir.infer_shapes(lowered, dict(enumerate(shapes))))
    checked = []
    for line in source.splitlines():
        checked.append(line)
        match = re.fullmatch(r"(\s*)(\w+) = .*  # \[([\d,]*)\]", line)
        if match:
            indent, name, dims = match.groups()
            want = tuple(int(d) for d in dims.split(",") if d)
            checked.append(f"{indent}assert jnp.shape({name}) == {want!r}, {name!r}")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(checked), "<checked>", "exec"), namespace)  # noqa: S102
    function = namespace["graph"]
    floats = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes if s != ()]
    keys = [jax.random.key(0)] * (len(shapes) - len(floats))

    def loss(*xs: Any) -> Any:
        return sum(jnp.sum(out) for out in function(*xs, *keys))

    jax.eval_shape(function, *floats, *keys)
    jax.eval_shape(jax.grad(loss, tuple(range(len(floats)))), *floats)


def test_render_is_deterministic_and_names_are_python() -> None:
    lowered = PassManager().run(_seed_flash(base.with_causal(True)))
    source = render(lowered)
    assert source == render(lowered)
    region = "region_flash_attn_output"
    assert f"    @jax.custom_vjp\n    def {region}(q, k, v):\n" in source
    assert f"    def {region}_bwd(residuals, cotangents):\n" in source
    assert "        (q_2, k_2, v_2), (out_3, lse_2) = residuals\n" in source
    assert f"    {region}.defvjp({region}_fwd, {region}_bwd)\n" in source
    # causal block skipping: the key loop's end depends on i, so both bounds become int32
    assert "hi_2 = end_kv_tile(q.shape[-2], k.shape[-2], i, 16, 8, 0)" in source
    # the key tiles every row sees whole need no mask; the diagonal's tiles follow
    assert "whole_hi = full_kv_tiles(q.shape[-2], k.shape[-2], i, 16, 8, math.inf, 0)[1]" in source
    assert (
        "(acc_whole, max_whole, sum_whole) = lax.fori_loop(jnp.int32(lo_2), "
        "jnp.int32(whole_hi), step_acc_whole, (acc0, max0, sum0))" in source
    )
    assert (
        "(acc_edge, max_edge, sum_edge) = lax.fori_loop(jnp.int32(whole_hi), jnp.int32(hi_2), "
        "step_acc_edge, (acc_whole, max_whole, sum_whole))" in source
    )
    assert "(out_padded, lse_padded) = lax.fori_loop(lo, hi, step_out_padded," in source
    assert "(acc_2, max_2, sum_2) = carry" in source  # the inner body's carry, renamed
    assert "return (cotangent(q_2, dq_3), cotangent(k_2, dk_3), cotangent(v_2, dv_3))" in source
    compile(source, "<rendered>", "exec")


def test_render_without_custom_vjp_does_not_import_jax() -> None:
    source = render(_mha_graph())
    assert "import jax\n" not in source and "custom_vjp" not in source


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
