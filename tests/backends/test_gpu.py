"""On a GPU: the default GPU tiles against float64, forward and backward, bf16 and float32.

Marked `gpu`: skipped in CI; run with the device tool:
    PYTHONPATH=. python3 -m pytest tests/backends/test_gpu.py -m gpu
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backends import jax as backend_jax
from tests.reference import attention64, attention64_vjp, flash_graph, flash_spec, naive_jax

pytestmark = pytest.mark.gpu

CASES = [  # (sq, skv, h, g, causal, window, dtype)
    (1000, 1000, 4, 2, True, None, "bfloat16"),
    (4097, 3001, 4, 4, False, None, "bfloat16"),
    (3001, 4097, 8, 2, True, (700, 0), "float16"),
    (5000, 5000, 2, 1, True, None, "float32"),
]


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"sq={c[0]}-skv={c[1]}-h{c[2]}g{c[3]}-{c[-1]}"
)
def test_default_gpu_pipeline_forward_and_backward(case):
    sq, skv, h, g, causal, window, dtype_name = case
    assert backend_jax.default_pipeline()[0].block_q == backend_jax.GPU_KERNEL_BLOCK_Q
    dtype = jnp.dtype(dtype_name)
    rng = np.random.default_rng(sq)
    q = jnp.asarray(rng.standard_normal((1, h, sq, 64)), dtype)
    k = jnp.asarray(rng.standard_normal((1, g, skv, 64)), dtype)
    v = jnp.asarray(rng.standard_normal((1, g, skv, 64)), dtype)
    d_out = jnp.asarray(rng.standard_normal((1, h, sq, 64)), dtype)
    spec = flash_spec("g" if g != h else "h", 128, 128, causal, window)
    compiled = backend_jax.compile(flash_graph(spec))
    flash = jax.jit(lambda q, k, v: compiled.function(q, k, v)[0])

    out, pullback = jax.vjp(flash, q, k, v)
    grads = pullback(d_out)
    assert compiled.kernels and all("Pallas kernel" in line for line in compiled.kernels)
    inputs64 = [np.asarray(x, np.float64) for x in (q, k, v)]
    ref, _ = attention64(*inputs64, causal, window)
    ref_grads = attention64_vjp(*inputs64, np.asarray(d_out, np.float64), causal, window)
    naive_out, naive_pullback = jax.vjp(lambda *x: naive_jax(*x, causal, window), q, k, v)
    naive_grads = naive_pullback(d_out)

    def error(a, b):
        return np.abs(np.asarray(a, np.float64) - b).max()

    assert np.isfinite(np.asarray(out, np.float32)).all()
    assert error(out, ref) <= 2 * error(naive_out, ref) + 1e-5
    for name, got, naive, want in zip("qkv", grads, naive_grads, ref_grads):
        assert np.isfinite(np.asarray(got, np.float32)).all(), name
        assert error(got, want) <= 2 * error(naive, want) + 1e-4 * np.abs(want).max(), name


def test_head_dims_triton_cannot_take_fall_back_to_xla_loops():
    """d = 80 is no power of two: the forward runs as XLA loops, tiled for XLA."""
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 2, 300, 80)), jnp.bfloat16) for _ in range(3))
    compiled = backend_jax.compile(flash_graph(flash_spec("h", 128, 128, True, None)))
    (out,) = compiled(q, k, v)
    (line,) = compiled.kernels
    assert line.startswith("no kernel for these inputs") and "as XLA loops" in line
    assert "axis 'd' of 80 is not a power of two" in line
    assert compiled.retiled is not None  # the XLA loops' tiles, not the kernel's
    ref, _ = attention64(*(np.asarray(x, np.float64) for x in (q, k, v)), True, None)
    assert np.abs(np.asarray(out, np.float64) - ref).max() < 2e-2


@pytest.mark.parametrize(
    "dtype_name, kernel", [("bfloat16", True), ("float16", True), ("float32", False)]
)
def test_head_dim_128_kernel_or_shared_memory_fallback(dtype_name, kernel):
    """d = 128: a kernel in 16-bit types; in float32 its K and V tiles would not fit two
    pipeline stages in shared memory, so the forward runs as XLA loops of XLA's tiles."""
    rng = np.random.default_rng(1)
    dtype = jnp.dtype(dtype_name)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 4, 1500, 128)), dtype) for _ in range(3))
    compiled = backend_jax.compile(flash_graph(flash_spec("h", 128, 128, True, None)))
    (out,) = compiled(q, k, v)
    assert len(compiled.kernels) == 1
    assert ("Pallas kernel" in compiled.kernels[0]) is kernel, compiled.kernels
    ref, _ = attention64(*(np.asarray(x, np.float64) for x in (q, k, v)), True, None)
    naive = np.asarray(naive_jax(q, k, v, True, None), np.float64)
    error = np.abs(np.asarray(out, np.float64) - ref).max()
    assert error <= 2 * np.abs(naive - ref).max() + 1e-5
