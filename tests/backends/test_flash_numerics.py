"""tile-flash + JAX against an independent float64 reference, FlashAttention-test style.

Criterion (float32): max|out - ref64| <= 3 max|naive32 - ref64| + 1e-5. For bf16/fp16:
<= 2 (the naive same-dtype error) + 2 max|(ref + 0.3 - 0.3) - ref| (the dtype's rounding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import passes
import tlir
from backends import jax as backend_jax
from backends import numpy as backend_numpy
from tests.reference import attention64, attention64_vjp, flash_graph, flash_spec, naive_jax

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

# (sq, skv, h, g, d, bq, bk, causal, window, dtype)
CASES = [
    (1, 1, 2, 2, 32, 16, 16, False, None, "float32"),
    (2, 2, 2, 2, 32, 16, 16, True, None, "float32"),
    (17, 17, 2, 2, 64, 16, 16, True, None, "float32"),
    (113, 113, 2, 2, 64, 32, 64, False, None, "float32"),
    (127, 127, 2, 2, 64, 64, 32, True, None, "float32"),
    (128, 128, 2, 2, 128, 128, 128, True, None, "float32"),
    (129, 129, 2, 2, 64, 64, 64, False, None, "float32"),
    (1000, 1000, 2, 2, 64, 128, 128, True, None, "float32"),
    (113, 211, 2, 2, 32, 64, 16, True, None, "float32"),
    (211, 113, 2, 2, 32, 16, 64, True, None, "float32"),
    (17, 129, 2, 2, 64, 16, 32, False, None, "float32"),
    (129, 17, 2, 2, 64, 32, 16, False, None, "float32"),
    (113, 113, 6, 2, 64, 32, 32, True, None, "float32"),
    (127, 129, 6, 1, 32, 64, 16, False, None, "float32"),
    (129, 127, 4, 1, 128, 16, 64, True, None, "float32"),
    (129, 129, 2, 2, 64, 32, 32, False, (16, 16), "float32"),
    (129, 129, 2, 2, 64, 32, 32, True, (40, 5), "float32"),
    (100, 150, 4, 2, 32, 32, 64, False, (8, 0), "float32"),
    (113, 113, 2, 2, 64, 64, 32, True, None, "bfloat16"),
    (127, 200, 6, 2, 64, 32, 64, False, None, "bfloat16"),
    (129, 129, 4, 1, 128, 128, 64, True, (30, 0), "bfloat16"),
    (113, 113, 2, 2, 64, 64, 32, True, None, "float16"),
    (200, 127, 6, 2, 32, 16, 128, False, None, "float16"),
    (1000, 1000, 4, 2, 64, 128, 128, True, None, "float16"),
]


def case_id(case) -> str:
    sq, skv, h, g, d, bq, bk, causal, window, dtype = case
    text = f"sq={sq}-skv={skv}-h{h}g{g}-d={d}-bq={bq}-bk={bk}"
    text += "-causal" if causal else ""
    text += f"-window{window[0]}x{window[1]}" if window else ""
    return f"{text}-{dtype}"


def random_qkv(rng, sq, skv, h, g, d, dtype, b=1, scale=1.0):
    q = rng.standard_normal((b, h, sq, d)) * scale
    k = rng.standard_normal((b, g, skv, d)) * scale
    v = rng.standard_normal((b, g, skv, d))
    return q, k, v


def compile_case(h, g, bq, bk, causal, window, lse=False, block_q=None):
    spec = flash_spec("h" if g == h else "g", bq, bk, causal, window, lse)
    pipeline = [passes.TileFlash(block_q=block_q), "dead-code"]
    return backend_jax.compile(flash_graph(spec), pipeline)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_float64_reference(case):
    sq, skv, h, g, d, bq, bk, causal, window, dtype_name = case
    dtype = DTYPES[dtype_name]
    rng = np.random.default_rng(sq * 7 + skv)
    q, k, v = random_qkv(rng, sq, skv, h, g, d, dtype_name)
    qd, kd, vd = (jnp.asarray(x, dtype) for x in (q, k, v))
    ref, _ = attention64(*(np.asarray(x, np.float64) for x in (qd, kd, vd)), causal, window)

    compiled = compile_case(h, g, bq, bk, causal, window)
    (out,) = compiled(qd, kd, vd)
    assert out.dtype == dtype
    out64 = np.asarray(out, np.float64)
    assert np.isfinite(out64).all()
    error = np.abs(out64 - ref).max()

    if dtype_name == "float32":
        naive = naive_jax(qd, kd, vd, causal, window)
        bound = 3 * np.abs(np.asarray(naive, np.float64) - ref).max() + 1e-5
    else:
        naive = naive_jax(qd, kd, vd, causal, window)
        rounding = np.abs(np.asarray((jnp.asarray(ref, dtype) + 0.3) - 0.3, np.float64) - ref).max()
        bound = 2 * np.abs(np.asarray(naive, np.float64) - ref).max() + 2 * rounding
    assert error <= bound, f"error {error:.3g} > bound {bound:.3g}"

    (again,) = compiled(qd, kd, vd)
    assert np.array_equal(np.asarray(out), np.asarray(again)), "two runs differ"


def test_tiled_numpy_matches_reference_and_fully_masked_rows_are_zero():
    """Sq > Skv with causal: the first Sq - Skv queries see no key and must output exactly 0."""
    rng = np.random.default_rng(3)
    q, k, v = random_qkv(rng, 40, 13, 4, 2, 16, "float64")
    spec = flash_spec("g", 16, 8, causal=True, lse=True)
    tiled = passes.PassManager().run(flash_graph(spec))
    out, lse = backend_numpy.run(tiled, q, k, v)
    ref, ref_lse = attention64(q, k, v, causal=True)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-12, atol=1e-12)
    assert (out[:, :, : 40 - 13] == 0).all()
    assert np.isneginf(lse[:, :, : 40 - 13]).all()


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16", "float16"])
def test_no_nan_for_large_logits_and_masked_leading_tiles(dtype_name):
    """Huge logits, a window that masks the first tiles of every row, and empty rows."""
    dtype = DTYPES[dtype_name]
    rng = np.random.default_rng(5)
    q, k, v = random_qkv(rng, 70, 50, 2, 2, 32, dtype_name, scale=30.0)
    qd, kd, vd = (jnp.asarray(x, dtype) for x in (q, k, v))
    compiled = compile_case(2, 2, 16, 8, True, (3, 0))
    (out,) = compiled(qd, kd, vd)
    out64 = np.asarray(out, np.float64)
    assert np.isfinite(out64).all()
    assert (out64[:, :, :20] == 0).all()  # 70 - 50 rows see no key
    ref, _ = attention64(*(np.asarray(x, np.float64) for x in (qd, kd, vd)), True, (3, 0))
    naive = np.asarray(naive_jax(qd, kd, vd, True, (3, 0)), np.float64)
    bound = 2 * np.abs(naive - ref).max() + 1e-5 * np.abs(ref).max()
    assert np.abs(out64 - ref).max() <= bound


def test_window_changes_the_result():
    rng = np.random.default_rng(11)
    q, k, v = (jnp.asarray(x, jnp.float32) for x in random_qkv(rng, 64, 64, 2, 2, 16, "f"))
    (windowed,) = compile_case(2, 2, 16, 16, False, (4, 4))(q, k, v)
    (plain,) = compile_case(2, 2, 16, 16, False, None)(q, k, v)
    assert not np.allclose(np.asarray(windowed), np.asarray(plain))


@pytest.mark.parametrize("block_q", [0, 48])
def test_block_overrides_keep_the_result(block_q):
    rng = np.random.default_rng(2)
    q, k, v = (jnp.asarray(x, jnp.float32) for x in random_qkv(rng, 100, 90, 4, 2, 16, "f"))
    ref, lse_ref = attention64(q, k, v, causal=True)
    out, lse = compile_case(4, 2, 32, 32, True, None, lse=True, block_q=block_q)(q, k, v)
    np.testing.assert_allclose(np.asarray(out), ref, atol=2e-5)
    finite = np.isfinite(lse_ref)
    np.testing.assert_allclose(np.asarray(lse)[finite], lse_ref[finite], atol=2e-5)
    assert np.isneginf(np.asarray(lse)[~finite]).all()


GRAD_CASES = [c for c in CASES if c[-1] == "float32" and c[0] * c[1] <= 130_000]


@pytest.mark.parametrize("case", GRAD_CASES, ids=case_id)
def test_gradients_match_float64(case):
    """jax.grad through the custom_vjp (FlashAttention-2 backward loops) against float64.

    Criterion: max|g - g64| <= 1e-4 max|g64| + 3 max|naive32 grad - g64| (float32 rounding).
    """
    sq, skv, h, g, d, bq, bk, causal, window, _ = case
    rng = np.random.default_rng(sq + 3 * skv)
    q, k, v = (jnp.asarray(x, jnp.float32) for x in random_qkv(rng, sq, skv, h, g, d, "f"))
    d_out = jnp.asarray(rng.standard_normal((1, h, sq, d)), jnp.float32)
    flash = backend_jax.lower(compile_case(h, g, bq, bk, causal, window).graph)

    def first(q, k, v):
        return flash(q, k, v)[0]

    _, pullback = jax.vjp(jax.jit(first), q, k, v)
    got = pullback(d_out)
    _, naive_pullback = jax.vjp(lambda q, k, v: naive_jax(q, k, v, causal, window), q, k, v)
    naive = naive_pullback(d_out)
    want = attention64_vjp(q, k, v, d_out, causal, window)
    for name, a, n, w in zip("qkv", got, naive, want):
        a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
        assert np.isfinite(a).all(), name
        bound = 1e-4 * np.abs(w).max() + 3 * np.abs(n - w).max() + 1e-6
        assert np.abs(a - w).max() <= bound, f"d{name}: {np.abs(a - w).max():.3g} > {bound:.3g}"


def test_grad_of_fully_masked_rows_is_zero_not_nan():
    rng = np.random.default_rng(4)
    q, k, v = (jnp.asarray(x, jnp.float32) for x in random_qkv(rng, 30, 10, 2, 2, 8, "f"))
    flash = backend_jax.lower(compile_case(2, 2, 8, 8, True, None).graph)
    dq, dk, dv = jax.grad(lambda *x: jnp.sum(flash(*x)[0] ** 2), argnums=(0, 1, 2))(q, k, v)
    for grad in (dq, dk, dv):
        assert np.isfinite(np.asarray(grad)).all()
    assert (np.asarray(dq)[:, :, :20] == 0).all()  # rows that see no key


def test_lse_output_gradient():
    """The lse result is differentiable too (users merge partial attentions with it)."""
    rng = np.random.default_rng(8)
    q, k, v = (jnp.asarray(x, jnp.float32) for x in random_qkv(rng, 20, 24, 2, 1, 8, "f"))
    flash = backend_jax.lower(compile_case(2, 1, 8, 8, True, None, lse=True).graph)
    grads = jax.grad(lambda q, k: jnp.sum(flash(q, k, v)[1]), argnums=(0, 1))(q, k)

    def lse_naive(q, k):
        s = jnp.einsum("bhqd,bgkd->bhqk", q, k) / np.sqrt(8)
        mask = jnp.asarray(np.tril(np.ones((20, 24), bool), 4))
        return jnp.sum(jax.nn.logsumexp(jnp.where(mask, s, -jnp.inf), axis=-1))

    want = jax.grad(lse_naive, argnums=(0, 1))(q, k)
    for a, b in zip(grads, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_dropout_rate_determinism_and_zero_rate():
    rng = np.random.default_rng(12)
    q, k, v = (jnp.asarray(x, jnp.float32) for x in random_qkv(rng, 64, 96, 2, 2, 16, "f"))
    key = jax.random.key(7)
    dropped = backend_jax.compile(flash_graph(flash_spec("h", 32, 32, dropout=0.3)))
    plain = compile_case(2, 2, 32, 32, False, None)
    same_tiles = [passes.TileFlash(), "dead-code"]  # as compile_case: the spec's tiles
    zero = backend_jax.compile(flash_graph(flash_spec("h", 32, 32, dropout=0.0)), same_tiles)
    (a,), (b,) = dropped(q, k, v, key), dropped(q, k, v, key)
    assert np.array_equal(np.asarray(a), np.asarray(b)), "same key, different result"
    (c,) = dropped(q, k, v, jax.random.key(8))
    assert not np.allclose(np.asarray(a), np.asarray(c))
    assert np.array_equal(np.asarray(zero(q, k, v)[0]), np.asarray(plain(q, k, v)[0]))

    # With V = identity rows, out = dropout(P) V exposes the kept probabilities: measure the rate.
    eye = jnp.broadcast_to(jnp.eye(96, dtype=jnp.float32), (1, 2, 96, 96))
    wide = backend_jax.compile(flash_graph(flash_spec("h", 32, 32, dropout=0.3)))
    (weights,) = wide(q, k, eye, key)
    rate = float(np.mean(np.asarray(weights) == 0))
    assert abs(rate - 0.3) < 0.01, rate


def test_dropout_gradient_uses_the_same_mask():
    """Gradients of dropout attention against autodiff of the same masked attention, densely."""
    rng = np.random.default_rng(13)
    q, k, v = (jnp.asarray(x, jnp.float32) for x in random_qkv(rng, 40, 48, 4, 2, 16, "f"))
    key = jax.random.key(3)
    compiled = backend_jax.compile(flash_graph(flash_spec("g", 16, 16, causal=True, dropout=0.2)))
    flash = backend_jax.lower(compiled.graph)
    eye = jnp.broadcast_to(jnp.eye(48, dtype=jnp.float32), (1, 2, 48, 48))
    (kept,) = flash(q, k, eye, key)  # [1, 4, 40, 48]: dropout(P), whose zeros are the mask
    keep = np.asarray(kept) != 0

    def dense(q, k, v):
        s = jnp.einsum("bhqd,bhkd->bhqk", q, jnp.repeat(k, 2, 1)) / 4.0
        mask = jnp.asarray(np.tril(np.ones((40, 48), bool), 8))
        p = jax.nn.softmax(jnp.where(mask, s, -jnp.inf), axis=-1)
        p = jnp.where(keep, p / 0.8, 0.0)
        return jnp.einsum("bhqk,bhkv->bhqv", p, jnp.repeat(v, 2, 1))

    d_out = jnp.asarray(rng.standard_normal((1, 4, 40, 16)), jnp.float32)
    got = jax.vjp(lambda q, k, v: flash(q, k, v, key)[0], q, k, v)[1](d_out)
    want = jax.vjp(dense, q, k, v)[1](d_out)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=2e-5)


def test_a_window_wider_than_both_sequences_is_no_window():
    """Window sides are clamped before int32 index arithmetic, which would otherwise overflow."""
    rng = np.random.default_rng(21)
    q, k, v = (jnp.asarray(x, jnp.float32) for x in random_qkv(rng, 20, 10, 2, 2, 8, "f"))
    ref, _ = attention64(q, k, v, False, None)
    for window in [(2**31 - 1, 0), (3_000_000_000, 2**40)]:
        graph = flash_graph(flash_spec("h", 8, 4, window=window))
        (out,) = backend_jax.compile(graph)(q, k, v)
        expected, _ = attention64(q, k, v, False, window)
        np.testing.assert_allclose(np.asarray(out), expected, atol=2e-6)
    np.testing.assert_allclose(expected, ref, atol=1e-12)  # the last window covers everything


def test_integer_inputs_are_refused():
    q = np.ones((1, 2, 8, 4), np.int32)
    with pytest.raises(tlir.LoweringError, match=r"needs floating operands, found int32"):
        compile_case(2, 2, 4, 4, False, None)(q, q, q)
