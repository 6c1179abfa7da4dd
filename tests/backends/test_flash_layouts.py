"""Flash specs in any layout: the roles come from the labels, so `bqhd,bkhd,bkhv->bqhv` (the layout
of jax.nn.dot_product_attention) is the same attention as `bhqd,bhkd,bhkv->bhqv` on transposed
operands. Checked against the float64 reference of tests/reference.py, forward and gradients,
through tile-flash + JAX and the numpy backend.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backends.jax as backend_jax
import backends.numpy as backend_numpy
import passes
from tests.reference import attention64, flash_graph

# (spec, transpose from the legend's [b,h,s,d] to the spec's layout, for q/k/v/out and lse)
LAYOUTS = [
    ("flash_bqhd,bkhd,bkhv->bqhv", (0, 2, 1, 3), (0, 2, 1)),
    ("flash_bqhd,bkgd,bkgv->bqhv", (0, 2, 1, 3), (0, 2, 1)),
    ("flash_qdbh,kdbh,kvbh->qvbh", (2, 3, 0, 1), (2, 0, 1)),
    ("flash_hbqd,hbkd,hbkv->hbqv", (1, 0, 2, 3), (1, 0, 2)),
]
PIPELINE = [passes.TileFlash(block_q=16, block_kv=8), "dead-code"]


def _inputs(grouped: bool) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(7)
    b, h, sq, skv, d, dv = 2, 4, 21, 13, 8, 5
    g = 2 if grouped else h
    q = rng.standard_normal((b, h, sq, d)).astype(np.float32)
    k = rng.standard_normal((b, g, skv, d)).astype(np.float32)
    v = rng.standard_normal((b, g, skv, dv)).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize(("spec", "perm", "lse_perm"), LAYOUTS, ids=[s for s, _, _ in LAYOUTS])
def test_layout_matches_the_reference(spec, perm, lse_perm):
    q, k, v = _inputs("g" in spec)
    want_out, want_lse = attention64(q, k, v, causal=True)
    args = [np.transpose(x, perm) for x in (q, k, v)]
    graph = flash_graph(f"{spec}_16_8_causal_lse")
    out, lse = backend_jax.compile(graph, PIPELINE)(*args)
    np.testing.assert_allclose(out, np.transpose(want_out, perm), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(lse, np.transpose(want_lse, lse_perm), atol=2e-5, rtol=1e-5)
    ref_out, ref_lse = backend_numpy.run(graph, *args)
    np.testing.assert_allclose(ref_out, np.transpose(want_out, perm), atol=1e-12)
    np.testing.assert_allclose(ref_lse, np.transpose(want_lse, lse_perm), atol=1e-12)


def test_jax_layout_gradients_match_the_legend_layout():
    """d/dq, d/dk, d/dv of sum(out * w) agree between the two layouts of the same attention."""
    q, k, v = _inputs(grouped=True)
    legend = backend_jax.lower(
        passes.PassManager(PIPELINE).run(flash_graph("flash_bhqd,bgkd,bgkv->bhqv_16_8_causal"))
    )
    jax_layout = backend_jax.lower(
        passes.PassManager(PIPELINE).run(flash_graph("flash_bqhd,bkgd,bkgv->bqhv_16_8_causal"))
    )
    weights = np.random.default_rng(1).standard_normal((2, 4, 21, 5)).astype(np.float32)

    def loss_legend(q, k, v):
        return jnp.sum(legend(q, k, v)[0] * weights)

    def loss_jax_layout(q, k, v):
        t = (0, 2, 1, 3)
        (out,) = jax_layout(*(jnp.transpose(x, t) for x in (q, k, v)))
        return jnp.sum(jnp.transpose(out, t) * weights)

    want = jax.grad(loss_legend, argnums=(0, 1, 2))(q, k, v)
    got = jax.grad(loss_jax_layout, argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-5)
    assert float(jnp.abs(want[1]).max()) > 0  # the gradient is not trivially zero


def test_the_tiled_graph_transposes_around_the_loops():
    graph = flash_graph("flash_bqhd,bkhd,bkhv->bqhv_16_8")
    text = str(passes.PassManager(PIPELINE).run(graph))
    assert text.count('einsum "bqhd->bhqd"') == 1
    assert 'einsum "bkhd->bhkd"' in text and 'einsum "bkhv->bhkv"' in text
    assert 'einsum "bhqv->bqhv"' in text
