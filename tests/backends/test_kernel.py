"""Parallel loops as Pallas kernels (backends/kernel.py), checked on any device through Pallas'
interpreter: the same kernel body, grid and block specs that Triton compiles on a GPU.

Also: the unmasked run of key tiles (first_full_kv_tile/end_full_kv_tile) against brute force,
and the refusals that make the JAX backend fall back to XLA loops.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import passes
import tlir
from backends import jax as backend_jax
from backends.interpreter import tile_range
from backends.jax import JaxInterpreter
from backends.kernel import KernelOptions, kernel_body
from tests.backends.test_flash_numerics import case_id
from tests.reference import (
    attention64,
    attention64_vjp,
    flash_graph,
    flash_spec,
    naive_jax,
    visible_mask,
)

# (sq, skv, h, g, d, bq, bk, causal, window, dtype)
CASES = [
    (64, 64, 2, 2, 32, 32, 16, False, None, "float32"),
    (50, 37, 2, 2, 32, 16, 16, False, None, "float32"),
    (64, 80, 2, 2, 32, 32, 16, True, None, "float32"),
    (80, 64, 2, 2, 32, 16, 32, True, None, "float32"),
    (61, 61, 2, 2, 48, 16, 16, True, None, "float32"),
    (64, 64, 2, 2, 32, 16, 16, False, (8, 5), "float32"),
    (70, 90, 2, 2, 32, 16, 16, True, (20, 0), "float32"),
    (50, 37, 4, 2, 32, 16, 16, True, None, "float32"),
    (33, 47, 6, 1, 32, 16, 32, False, None, "float32"),
    (64, 64, 2, 2, 64, 32, 32, True, None, "bfloat16"),
    (45, 77, 4, 2, 32, 16, 16, True, (10, 0), "float16"),
]

INTERPRET = KernelOptions(interpret=True)


def compile_kernel(case, kernels="interpret"):
    _, _, h, g, _, bq, bk, causal, window, _ = case
    spec = flash_spec("h" if g == h else "g", bq, bk, causal, window)
    return backend_jax.compile(flash_graph(spec), "tile-flash,dead-code", kernels)


def random_inputs(case, seed):
    sq, skv, h, g, d, *_, dtype = case
    rng = np.random.default_rng(seed)
    shapes = [(2, h, sq, d), (2, g, skv, d), (2, g, skv, d)]
    return [jnp.asarray(rng.standard_normal(shape), jnp.dtype(dtype)) for shape in shapes]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_kernel_matches_float64_and_the_xla_loops(case):
    causal, window, dtype = case[7], case[8], case[9]
    q, k, v = random_inputs(case, sum(case[:7]))
    compiled = compile_kernel(case)
    (out,) = compiled(q, k, v)
    assert compiled.kernels == [
        "loop 'loop(carry=2)' [parallel="
        + ("bgr" if case[3] != case[2] else "bh")
        + "]: Pallas kernel"
    ]
    assert "pallas_call" in str(compiled.jaxpr(q, k, v))
    assert out.dtype == q.dtype
    ref, _ = attention64(*(np.asarray(x, np.float64) for x in (q, k, v)), causal, window)
    error = np.abs(np.asarray(out, np.float64) - ref).max()
    naive = np.asarray(naive_jax(q, k, v, causal, window), np.float64)
    bound = 3 * np.abs(naive - ref).max() + (1e-5 if dtype == "float32" else 1e-2)
    assert np.isfinite(np.asarray(out, np.float64)).all()
    assert error <= bound, f"error {error:.3g} > bound {bound:.3g}"
    (xla,) = compile_kernel(case, "xla")(q, k, v)
    np.testing.assert_allclose(np.asarray(out, np.float64), np.asarray(xla, np.float64), atol=bound)


@pytest.mark.parametrize("case", [CASES[2], CASES[6], CASES[7]], ids=case_id)
def test_gradients_through_the_kernel_forward_match_float64(case):
    """The kernel is the custom_vjp's forward; the backward loops recompute from its lse."""
    causal, window = case[7], case[8]
    q, k, v = random_inputs(case, 7)
    d_out = jnp.asarray(np.random.default_rng(8).standard_normal(q.shape), jnp.float32)
    compiled = compile_kernel(case)
    _, pullback = jax.vjp(lambda *x: compiled(*x)[0], q, k, v)
    got = pullback(d_out)
    want = attention64_vjp(q, k, v, d_out, causal, window)
    _, naive_pullback = jax.vjp(lambda *x: naive_jax(*x, causal, window), q, k, v)
    for name, a, n, w in zip("qkv", got, naive_pullback(d_out), want):
        bound = 1e-4 * np.abs(w).max() + 3 * np.abs(np.asarray(n) - w).max() + 1e-6
        assert np.abs(np.asarray(a, np.float64) - w).max() <= bound, name


def test_separate_backward_tiles_keep_the_gradients():
    case = CASES[4]
    q, k, v = random_inputs(case, 3)
    spec = flash_spec("h", 16, 16, True)
    small = backend_jax.compile(flash_graph(spec), "tile-flash,dead-code", "xla")
    mixed = backend_jax.compile(
        flash_graph(spec), "tile-flash{bwd_block_q=32,bwd_block_kv=64},dead-code", "interpret"
    )
    assert "pad_tiles(k,64)" in str(mixed.graph).split("} grad {")[1]

    def loss(fn):
        return jax.grad(lambda *x: jnp.sum(fn(*x)[0] ** 2), argnums=(0, 1, 2))(q, k, v)

    for a, b in zip(loss(small), loss(mixed)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_dropout_needs_the_same_tiles_both_ways():
    graph = flash_graph(flash_spec("h", 16, 16, dropout=0.1))
    before = str(graph)
    with pytest.raises(tlir.PassError, match=r"dropout.*backward must use the forward's tiles"):
        passes.TileFlash(bwd_block_q=64).run(graph)
    assert str(graph) == before
    on_gpu = backend_jax.default_pipeline("gpu", graph)[0]
    assert (on_gpu.block_q, on_gpu.bwd_block_q) == (backend_jax.GPU_BLOCK_Q, None)
    plain = backend_jax.default_pipeline("gpu", flash_graph(flash_spec("h")))[0]
    assert (plain.block_q, plain.block_kv) == (
        backend_jax.GPU_KERNEL_BLOCK_Q,
        backend_jax.GPU_KERNEL_BLOCK_KV,
    )
    assert (plain.bwd_block_q, plain.bwd_block_kv) == (
        backend_jax.GPU_BLOCK_Q,
        backend_jax.GPU_BLOCK_KV,
    )


def test_kernel_body_drops_the_grid_labels():
    tiled = passes.PassManager().run(flash_graph(flash_spec("h", 32, 16, True)))
    forward = tiled.nodes[0].body
    loop = next(node for node in forward.nodes if node.attr("parallel"))
    assert loop.attr("parallel") == "bh"
    text = str(kernel_body(loop.body, "bh"))
    assert '"qd,kd->qk" (%q_tile, %k_tile) [acc=float32]' in text
    assert '"tile(q,32):qd,->qd" (%q_padded, %i)' in text
    assert '"put_tile(q,32):qv,qv,->qv" (%out, %normalized, %i)' in text
    assert "bh" not in text.replace("graph(", "")


def _loop_graph(body_spec: str, term: str, out_term: str) -> tlir.EinsumGraph:
    """A parallel loop over `x` tiles whose body applies `body_spec` and writes tile i."""
    body = tlir.EinsumGraph()
    i, x, out = (body.add_tensor(name) for name in ("i", "x", "out"))
    x_tile, y, new = (body.add_tensor(name) for name in ("x_tile", "y", "new_out"))
    body.add_node(tlir.EinsumNode(f"tile(q,16):{term},->{term}", (x, i), (x_tile,)))
    body.add_node(tlir.EinsumNode(body_spec, (x_tile,), (y,)))
    body.add_node(
        tlir.EinsumNode(f"put_tile(q,16):{out_term},{out_term},->{out_term}", (out, y, i), (new,))
    )
    for t in (i, x, out):
        body.add_input(t)
    body.add_output(new)
    graph = tlir.EinsumGraph()
    x, out0, lo, hi, result = (graph.add_tensor(n) for n in ("x", "out0", "lo", "hi", "result"))
    graph.add_node(tlir.EinsumNode("iconst(0):->", (), (lo,)))
    graph.add_node(tlir.EinsumNode(f"num_tiles(q,16):{term}->", (x,), (hi,)))
    graph.add_node(tlir.EinsumNode(f"full(0):{term}->{out_term}", (x,), (out0,)))
    graph.add_node(
        tlir.EinsumNode(
            "loop(carry=1)", (lo, hi, x, out0), (result,), attrs={"parallel": "b"}, body=body
        )
    )
    return graph


def test_a_parallel_loop_that_mixes_grid_values_is_not_a_kernel():
    mixes = _loop_graph("sum:bqd->qd", "bqd", "qd")
    with pytest.raises(tlir.LoweringError, match="reduces over parallel label 'b'"):
        backend_jax.lower(mixes, "interpret")(np.ones((2, 32, 16), np.float32))
    # where kernels are optional, the loop runs as XLA loops and the log says why
    interpreter = JaxInterpreter(INTERPRET, required=False)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 32, 16)), jnp.float32)
    (result,) = interpreter.run_graph(mixes, [x])
    np.testing.assert_allclose(np.asarray(result), np.asarray(x).sum(0), rtol=1e-6)
    assert "XLA loops, not a kernel" in interpreter.kernel_log[0]
    assert "reduces over parallel label 'b'" in interpreter.kernel_log[0]


def test_a_simple_parallel_loop_is_a_kernel():
    graph = _loop_graph("exp:bqd->bqd", "bqd", "bqd")
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 32, 16)), jnp.float32)
    lowered = backend_jax.lower(graph, "interpret")
    (result,) = lowered(x)
    np.testing.assert_allclose(np.asarray(result), np.exp(np.asarray(x)), rtol=1e-6)
    assert lowered.kernel_log == ["loop 'loop(carry=1)' [parallel=b]: Pallas kernel"]


def test_triton_needs_power_of_two_blocks():
    """Refused before anything is compiled, so on a GPU the backend falls back to XLA loops."""
    compiled = compile_kernel((48, 48, 2, 2, 48, 16, 16, True, None, "float32"), "pallas")
    q, k, v = random_inputs((48, 48, 2, 2, 48, 16, 16, True, None, "float32"), 0)
    with pytest.raises(tlir.LoweringError, match="axis 'd' of 48 is not a power of two"):
        compiled(q, k, v)
    small = compile_kernel((48, 48, 2, 2, 32, 8, 8, True, None, "float32"), "pallas")
    with pytest.raises(tlir.LoweringError, match="not a power of two from 16 to 256"):
        small(*random_inputs((48, 48, 2, 2, 32, 8, 8, True, None, "float32"), 0))


def test_kernel_modes_are_checked():
    with pytest.raises(tlir.LoweringError, match="kernels must be one of auto, pallas"):
        backend_jax.lower(flash_graph(flash_spec()), "triton")


def test_only_loops_are_parallel():
    with pytest.raises(tlir.GraphError, match="only a loop node can be parallel"):
        tlir.EinsumNode("exp:ab->ab", (0,), (1,), attrs={"parallel": "a"})
    with pytest.raises(tlir.GraphError, match="parallel=b1 must list distinct labels"):
        _loop_graph("exp:bqd->bqd", "bqd", "bqd").nodes[3].__class__(
            "loop(carry=0)", (0, 1), (), attrs={"parallel": "b1"}, body=tlir.EinsumGraph()
        )


@settings(max_examples=150, deadline=None)
@given(
    sq=st.integers(1, 70),
    skv=st.integers(1, 70),
    bq=st.integers(1, 24),
    bk=st.integers(1, 24),
    causal=st.booleans(),
    window=st.none() | st.tuples(st.integers(0, 40), st.integers(0, 40)),
)
def test_whole_tiles_need_no_mask_and_the_runs_cover_the_visible_tiles(
    sq, skv, bq, bk, causal, window
):
    bq, bk = min(bq, sq), min(bk, skv)
    spec = tlir.parse_spec(flash_spec("h", bq, bk, causal, window))
    left, right = (np.inf if side is None else side for side in spec.visible_window())
    mask = visible_mask(sq, skv, causal, window)
    for i in range(-(-sq // bq)):
        args = (sq, skv, i, bq, bk, left, right)
        lo, hi, whole_lo, whole_hi = (
            int(tile_range(np, name, *args))
            for name in ("first_kv_tile", "end_kv_tile", "first_full_kv_tile", "end_full_kv_tile")
        )
        assert lo <= whole_lo <= whole_hi <= max(hi, lo)  # hi < lo: a tile that sees no key
        rows = mask[i * bq : (i + 1) * bq]
        for j in range(whole_lo, whole_hi):
            assert (j + 1) * bk <= skv and rows[:, j * bk : (j + 1) * bk].all(), (i, j)


def test_grid_order_does_not_change_the_result():
    case = CASES[7]  # GQA, causal, tails: grid (tiles, b, g, r)
    q, k, v = random_inputs(case, 5)
    first = compile_kernel(case)(q, k, v)[0]
    outermost = KernelOptions(interpret=True, iterations_outermost=True)
    again = compile_kernel(case, outermost)(q, k, v)[0]
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))


def test_causal_work_varies_over_query_tiles_so_they_lead_the_grid():
    from backends.kernel import _work_varies

    q = np.zeros((1, 2, 128, 32), np.float32)
    for causal in (False, True):
        tiled = passes.PassManager().run(flash_graph(flash_spec("h", 32, 32, causal)))
        loop = next(node for node in tiled.nodes[0].body.nodes if node.attr("parallel"))
        operands = [0, 4, q, q, q, q, q, 0.125, q, q[..., 0]]
        assert _work_varies(loop.body, operands, 0, 4) is causal


def test_blocks_must_cover_their_axis_whole():
    """An unpadded input tiled at the loop index would leave Triton a partial last block."""
    graph = _loop_graph("exp:bqd->bqd", "bqd", "bqd")
    x = np.ones((2, 40, 16), np.float32)
    with pytest.raises(tlir.LoweringError, match="tiles of 16 do not cover 40 whole"):
        backend_jax.lower(graph, "interpret")(x)


def test_an_input_read_whole_inside_the_body_is_not_a_kernel():
    body = tlir.EinsumGraph()
    i, x, y, out = (body.add_tensor(name) for name in ("i", "x", "y", "out"))
    x_tile, scores, new = (body.add_tensor(name) for name in ("x_tile", "scores", "new_out"))
    body.add_node(tlir.EinsumNode("tile(q,16):bqd,->bqd", (x, i), (x_tile,)))
    body.add_node(tlir.EinsumNode("bqd,bkd->bqk", (x_tile, y), (scores,)))
    body.add_node(tlir.EinsumNode("put_tile(q,16):bqk,bqk,->bqk", (out, scores, i), (new,)))
    for t in (i, x, y, out):
        body.add_input(t)
    body.add_output(new)
    graph = tlir.EinsumGraph()
    x, y, out0, lo, hi, result = (
        graph.add_tensor(n) for n in ("x", "y", "out0", "lo", "hi", "result")
    )
    graph.add_node(tlir.EinsumNode("iconst(0):->", (), (lo,)))
    graph.add_node(tlir.EinsumNode("num_tiles(q,16):bqd->", (x,), (hi,)))
    graph.add_node(tlir.EinsumNode("full(0):bqd,bkd->bqk", (x, y), (out0,)))
    graph.add_node(
        tlir.EinsumNode(
            "loop(carry=1)", (lo, hi, x, y, out0), (result,), attrs={"parallel": "b"}, body=body
        )
    )
    rng = np.random.default_rng(2)
    xs, ys = rng.standard_normal((2, 32, 16)), rng.standard_normal((2, 16, 16))
    with pytest.raises(tlir.LoweringError, match="input 'y' is read whole by 'bqd,bkd->bqk'"):
        backend_jax.lower(graph, "interpret")(xs, ys)
    (result,) = backend_jax.lower(graph, "xla")(xs, ys)
    np.testing.assert_allclose(
        np.asarray(result), np.einsum("bqd,bkd->bqk", xs, ys), rtol=1e-5, atol=1e-5
    )


def test_dropout_stays_outside_kernels():
    compiled = backend_jax.compile(
        flash_graph(flash_spec("h", 16, 16, dropout=0.1)), "tile-flash,dead-code", "interpret"
    )
    q = jnp.ones((1, 2, 32, 16), jnp.float32)
    with pytest.raises(tlir.LoweringError, match="jax.random does not run inside a Triton"):
        compiled(q, q, q, jax.random.key(0))


class _Captured:
    """Stands in for pl.pallas_call: records its arguments, returns zeros of the out shapes."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, kernel, **kwargs):
        self.calls.append(kwargs)
        return lambda *arrays: [jnp.zeros(s.shape, s.dtype) for s in kwargs["out_shape"]]


@pytest.mark.parametrize(
    "tiles, d, dtype, warps, stages",
    [
        ((128, 64), 64, "bfloat16", 4, 3),
        ((128, 128), 128, "bfloat16", 8, 3),
        ((128, 64), 128, "float32", 4, 3),
        ((128, 128), 64, "float32", 8, 3),
    ],
)
def test_triton_compiler_parameters(monkeypatch, tiles, d, dtype, warps, stages):
    from backends import kernel

    captured = _Captured()
    monkeypatch.setattr(kernel.pl, "pallas_call", captured)
    spec = flash_spec("h", tiles[0], tiles[1], True)
    pinned = backend_jax.compile(flash_graph(spec), "tile-flash,dead-code", KernelOptions())
    q = jnp.ones((1, 2, 256, d), dtype)
    pinned.function(q, q, q)
    (call,) = captured.calls
    params = call["compiler_params"]
    assert (params.num_warps, params.num_stages) == (warps, stages)
    assert call["grid"] == (1, 2, 256 // tiles[0])  # (b, h, query tiles): causal, outermost


def test_tiles_that_overflow_shared_memory_are_refused():
    spec = flash_spec("h", 128, 128)
    pinned = backend_jax.compile(flash_graph(spec), "tile-flash,dead-code", KernelOptions())
    q = jnp.ones((1, 2, 256, 128), jnp.float32)
    with pytest.raises(tlir.LoweringError, match="128 KiB per stage"):
        pinned.function(q, q, q)


def test_kernel_options_are_checked():
    with pytest.raises(tlir.LoweringError, match="num_warps must be 1, 2, 4, 8 or 16"):
        KernelOptions(num_warps=3)
    with pytest.raises(tlir.LoweringError, match="num_stages must be an integer >= 1"):
        KernelOptions(num_stages=0)


def test_rendered_whole_tile_bounds_match_the_interpreter():
    """backends/jax_source_helpers.py renders the bounds that backends/interpreter.py computes."""
    import math

    from backends.jax_source_helpers import HELPERS

    namespace = {"jnp": jnp, "math": math}
    for name in ("tile_size", "first_kv_tile", "end_kv_tile", "full_kv_tiles"):
        exec(HELPERS[name], namespace)  # noqa: S102 - the rendered helpers are the subject
    rng = np.random.default_rng(4)
    for _ in range(120):
        sq, skv = (int(n) for n in rng.integers(1, 60, 2))
        bq, bk = int(rng.integers(1, sq + 1)), int(rng.integers(1, skv + 1))
        left, right = (
            math.inf if rng.random() < 0.3 else int(rng.choice([0, 3, 17, 2**40])) for _ in range(2)
        )
        for i in range(-(-sq // bq)):
            args = (sq, skv, i, bq, bk, left, right)
            want = [
                int(tile_range(np, name, *args))
                for name in ("first_full_kv_tile", "end_full_kv_tile")
            ]
            got = [int(x) for x in namespace["full_kv_tiles"](*args)]
            assert got == want, args


def test_on_a_gpu_inputs_the_kernel_refuses_run_retiled_xla_loops(monkeypatch):
    """compile's GPU default tiles for the kernel (128x128); float32 with d = 128 does not fit
    its shared memory, so those inputs run the graph tiled for XLA loops instead (a CPU stands
    in for the GPU here: the refusal comes before anything is compiled)."""
    monkeypatch.setattr(backend_jax.jax, "default_backend", lambda: "gpu")
    compiled = backend_jax.compile(flash_graph(flash_spec("h", 128, 128, True)))
    assert "tile(q,128)" in str(compiled.graph) and compiled.retiled is None
    rng = np.random.default_rng(6)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 2, 300, 128)), jnp.float32) for _ in range(3))
    (out,) = compiled(q, k, v)
    (line,) = compiled.kernels
    assert line.startswith("no kernel for these inputs (") and "128 KiB per stage" in line
    assert "ran tile-flash{block_q=4096,block_kv=1024},dead-code as XLA loops" in line
    assert compiled.retiled is not None and "tile(q,4096)" in str(compiled.retiled)
    ref, _ = attention64(*(np.asarray(x, np.float64) for x in (q, k, v)), True, None)
    assert np.abs(np.asarray(out, np.float64) - ref).max() < 1e-5
    grads = jax.grad(lambda *x: jnp.sum(compiled(*x)[0]), argnums=(0, 1, 2))(q, k, v)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_work_varies_with_a_window_and_runs_that_share_their_ends():
    """Three key-tile runs share their bounds: the trip counts must pair each run's own ends.
    The first query tiles of a window see fewer keys than the later ones: work varies."""
    from backends.kernel import _work_varies

    q = np.zeros((1, 2, 256, 32), np.float32)
    operands = [0, 8, q, q, q, q, q, 0.125, q, q[..., 0]]
    for window, varies in (((64, 0), True), ((300, 0), True)):
        tiled = passes.PassManager().run(flash_graph(flash_spec("h", 32, 32, False, window)))
        loop = next(node for node in tiled.nodes[0].body.nodes if node.attr("parallel"))
        assert _work_varies(loop.body, operands, 0, 8) is varies, window
