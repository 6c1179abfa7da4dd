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
from backends import jax as backend_jax
from backends import numpy as backend_numpy
from tests.reference import attention64, flash_graph, flash_spec, naive_jax

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
        rounding = np.abs(
            np.asarray((jnp.asarray(ref, dtype) + 0.3) - 0.3, np.float64) - ref
        ).max()
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
    tolerance = 1e-4 if dtype_name == "float32" else 6e-2
    np.testing.assert_allclose(out64, ref, atol=tolerance * np.abs(ref).max(), rtol=0)


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


def test_jit_and_grad_match_naive_gradients():
    rng = np.random.default_rng(9)
    q, k, v = (jnp.asarray(x, jnp.float32) for x in random_qkv(rng, 37, 45, 4, 2, 16, "f"))
    compiled = compile_case(4, 2, 16, 16, True, (20, 0))
    flash = backend_jax.lower(compiled.graph)

    def loss_flash(q, k, v):
        return jnp.sum(flash(q, k, v)[0] ** 2)

    def loss_naive(q, k, v):
        return jnp.sum(naive_jax(q, k, v, True, (20, 0)) ** 2)

    got = jax.jit(jax.grad(loss_flash, argnums=(0, 1, 2)))(q, k, v)
    want = jax.grad(loss_naive, argnums=(0, 1, 2))(q, k, v)
    for name, a, b in zip("qkv", got, want):
        assert np.isfinite(np.asarray(a)).all(), name
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5, err_msg=name)
