"""tlir's compiled flash graph against its peers, side by side in one run.

    PYTHONPATH=. python3 benchmarks/attention.py [--ns 1024,4096,8192] [--causal both]
        [--backward] [--dtype float32] [--heads 8] [--dim 64] [--reps 5] [--markdown]

Peers: naive XLA attention (einsum + softmax + einsum), `jax.nn.dot_product_attention` (xla),
and on a GPU also its cudnn implementation and the Pallas GPU (Triton) flash kernel. Each row:
median time, the ratio naive/impl, memory and the error against a float64 reference (float32
naive where float64 does not fit). Memory on CPU is the process's peak resident memory during
one execution, each variant in a fresh process (XLA CPU's memory_analysis() reports 0 temp bytes
for naive attention that really allocates the N x N scores); on GPU it is XLA's temp bytes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def flash_fn(n_heads: int, causal: bool, on_gpu: bool, variant: str | None = None):
    """tlir's compiled flash graph. `variant`: None for `backends.jax.compile`'s defaults;
    `BqxBc` for other forward tiles (on a GPU the backward keeps its default tiles); a
    suffix `wN` runs the forward kernel with N warps, `sN` with N pipeline stages, a final `o`
    with the query tiles as the grid's outermost axis; `xla` forces XLA loops with the
    backward's tiles in both directions (the GPU path before kernels)."""
    import passes
    import tlir
    from backends import jax as backend_jax
    from backends.kernel import KernelOptions

    graph = tlir.EinsumGraph()
    q, k, v = (graph.add_tensor(name) for name in "qkv")
    out = graph.add_tensor("out")
    spec = tlir.format_flash(
        tuple("bhqd"), tuple("bhkd"), tuple("bhkv"), tuple("bhqv"), 128, 128, causal=causal
    )
    graph.add_node(tlir.EinsumNode(spec, (q, k, v), (out,)))
    kernels: object = "auto"
    if variant is None:
        pipeline = backend_jax.default_pipeline(graph=graph)
    elif variant == "xla":
        block_q = backend_jax.GPU_BLOCK_Q if on_gpu else backend_jax.CPU_BLOCK_Q
        block_kv = backend_jax.GPU_BLOCK_KV if on_gpu else None
        pipeline = [passes.TileFlash(block_q=block_q, block_kv=block_kv), "dead-code"]
        kernels = "xla"
    else:
        outermost = variant.endswith("o")
        variant, _, stages = variant.removesuffix("o").partition("s")
        tiles, _, warps = variant.partition("w")
        block_q, block_kv = (int(x) for x in tiles.split("x"))
        tile = passes.TileFlash(block_q=block_q, block_kv=block_kv)
        if on_gpu:
            tile = passes.TileFlash(
                block_q=block_q,
                block_kv=block_kv,
                bwd_block_q=backend_jax.GPU_BLOCK_Q,
                bwd_block_kv=backend_jax.GPU_BLOCK_KV,
            )
        pipeline = [tile, "dead-code"]
        if warps or stages or outermost:
            kernels = KernelOptions(
                num_warps=int(warps) if warps else None,
                num_stages=int(stages) if stages else 3,
                iterations_outermost=outermost,
            )
    compiled = backend_jax.compile(graph, pipeline, kernels)
    lowered = compiled.function

    def run(q, k, v):
        return lowered(q, k, v)[0]

    run.compiled = compiled
    return run


def naive(q, k, v, causal: bool):
    import jax
    import jax.numpy as jnp

    n, m = q.shape[2], k.shape[2]
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    s = s / math.sqrt(q.shape[-1])
    if causal:
        s = jnp.where(jnp.tril(jnp.ones((n, m), bool), m - n), s, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bhkv->bhqv", p, v, preferred_element_type=jnp.float32).astype(q.dtype)


def implementations(on_gpu: bool, heads: int, causal: bool, variants: str = "") -> dict:
    import jax
    import jax.numpy as jnp

    def dpa(implementation):
        def run(q, k, v):
            t = lambda x: jnp.swapaxes(x, 1, 2)
            out = jax.nn.dot_product_attention(
                t(q), t(k), t(v), is_causal=causal, implementation=implementation
            )
            return t(out)

        return run

    impls = {
        "tlir_flash": flash_fn(heads, causal, on_gpu),
        "naive_xla": lambda q, k, v: naive(q, k, v, causal),
        "jax_dpa_xla": dpa("xla"),
    }
    for variant in filter(None, variants.split(",")):
        impls[f"tlir_{variant}"] = flash_fn(heads, causal, on_gpu, variant)
    if on_gpu:
        impls["jax_dpa_cudnn"] = dpa("cudnn")
        try:
            from jax.experimental.pallas.ops.gpu import attention as pallas_attention

            def pallas(q, k, v):
                t = lambda x: jnp.swapaxes(x, 1, 2)
                out = pallas_attention.mha(
                    t(q),
                    t(k),
                    t(v),
                    None,
                    sm_scale=1 / math.sqrt(q.shape[-1]),
                    causal=causal,
                    block_sizes=pallas_attention.BlockSizes(
                        block_q=128,
                        block_k=64,
                        block_q_dkv=64,
                        block_kv_dkv=64,
                        block_q_dq=64,
                        block_kv_dq=64,
                    ),
                )
                return t(out)

            impls["pallas_triton"] = pallas
        except Exception as error:  # noqa: BLE001 - a missing peer is reported, not fatal
            print(f"# no Pallas GPU attention: {error}")
    return impls


def inputs(n: int, heads: int, dim: int, dtype_name: str):
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(n), 3)
    return [jax.random.normal(key, (1, heads, n, dim), jnp.dtype(dtype_name)) for key in keys]


def reference64(q, k, v, causal: bool) -> np.ndarray:
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    n, m = q.shape[2], k.shape[2]
    s = np.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones((n, m), bool), m - n), s, -np.inf)
    s = np.exp(s - s.max(-1, keepdims=True))
    return np.einsum("bhqk,bhkv->bhqv", s / s.sum(-1, keepdims=True), v)


def loss_grad(fn):
    import jax
    import jax.numpy as jnp

    return jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v).astype(jnp.float32)), argnums=(0, 1, 2))


def measure(args: argparse.Namespace, impl: str, n: int, causal: bool) -> dict:
    """One (impl, N, causal) row, in this process."""
    import jax

    on_gpu = jax.default_backend() == "gpu"
    fn = implementations(on_gpu, args.heads, causal, args.tlir_blocks)[impl]
    compiled_graph = getattr(fn, "compiled", None)
    if args.backward:
        fn = loss_grad(fn)
    jitted = jax.jit(fn)
    q, k, v = inputs(n, args.heads, args.dim, args.dtype)
    row: dict = {"impl": impl, "N": n, "causal": causal}
    try:
        compiled = jitted.lower(q, k, v).compile()
        if on_gpu:
            analysis = compiled.memory_analysis()
            row["temp_mib"] = analysis.temp_size_in_bytes / 2**20
        if on_gpu:
            result = jax.block_until_ready(compiled(q, k, v))
        else:
            # The first execution after compiling, as ../shared/anchors measures it.
            holder: list = []
            row["peak_mib"] = _peak_rss_mib(
                lambda: holder.append(jax.block_until_ready(compiled(q, k, v)))
            )
            result = holder[0]
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            jax.block_until_ready(compiled(q, k, v))
            times.append(time.perf_counter() - start)
        row["ms"] = float(np.median(times)) * 1e3
        if compiled_graph is not None:
            row["kernels"] = compiled_graph.kernels
        flops = 4 * args.heads * n * n * args.dim / (2 if causal else 1)
        row["tflops"] = flops * (3.5 if args.backward else 1) / (row["ms"] / 1e3) / 1e12
        if not args.backward:
            out = np.asarray(result, np.float64)
            if n <= args.max_ref_n:
                row["err"] = float(np.abs(out - reference64(q, k, v, causal)).max())
            row["finite"] = bool(np.isfinite(out).all())
    except Exception as error:  # noqa: BLE001 - out of memory and friends are results too
        row["error"] = str(error).splitlines()[0][:100]
    return row


def _peak_rss_mib(run) -> float | None:
    """Peak resident memory added by one call of `run` (Linux /proc), in MiB."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return None
    before = _status_kib("VmRSS")
    run()
    return (_status_kib("VmHWM") - before) / 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--ns", default="1024,4096,8192")
    parser.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    parser.add_argument("--backward", action="store_true", help="time jax.grad of sum(out)")
    parser.add_argument("--dtype", default=None, help="float32 on CPU, bfloat16 on GPU by default")
    parser.add_argument("--heads", type=int, default=None)
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-ref-n", type=int, default=4096)
    parser.add_argument("--impls", default=None, help="comma-separated subset")
    parser.add_argument(
        "--tlir-blocks",
        default="",
        help="extra tlir rows: forward tiles BqxBc[wWARPS], or xla (XLA loops), e.g. 128x64w4,xla",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()

    import jax

    on_gpu = jax.default_backend() == "gpu"
    args.dtype = args.dtype or ("bfloat16" if on_gpu else "float32")
    args.heads = args.heads or (16 if on_gpu else 8)
    args.dim = args.dim or (128 if on_gpu else 64)
    if args.child:
        impl, n, causal = args.child.split(":")
        print(json.dumps(measure(args, impl, int(n), causal == "1")))
        return

    device = jax.devices()[0].device_kind if on_gpu else platform.processor() or "cpu"
    print(
        f"# {datetime.date.today()} jax {jax.__version__} {jax.default_backend()} ({device}), "
        f"{os.cpu_count()} cpus; {args.dtype}, B=1, H={args.heads}, D={args.dim}, "
        f"{'forward+backward' if args.backward else 'forward'}"
    )
    print("# " + " ".join(sys.argv))
    causals = {"both": [False, True], "yes": [True], "no": [False]}[args.causal]
    names = list(implementations(on_gpu, args.heads, False, args.tlir_blocks))
    if args.impls:
        names = [name for name in names if name in args.impls.split(",")]
    rows = []
    for causal in causals:
        for n in (int(x) for x in args.ns.split(",")):
            for impl in names:
                rows.append(_run_row(args, impl, n, causal, on_gpu))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(format_table(rows, on_gpu))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


def _run_row(args: argparse.Namespace, impl: str, n: int, causal: bool, on_gpu: bool) -> dict:
    if on_gpu:
        return measure(args, impl, n, causal)
    # A fresh process per CPU row, so that each peak-RSS reading is this variant's alone.
    command = [
        sys.executable,
        os.path.abspath(__file__),
        *sys.argv[1:],
        "--child",
        f"{impl}:{n}:{int(causal)}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"impl": impl, "N": n, "causal": causal, "error": tail[:100]}


def format_table(rows: list[dict], on_gpu: bool) -> str:
    memory = "temp MiB" if on_gpu else "peak MiB"
    lines = [
        f"| impl | N | causal | ms | naive/impl | TFLOP/s | {memory} | naive/impl mem | max err |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    naive_rows = {(r["N"], r["causal"]): r for r in rows if r["impl"] == "naive_xla"}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['impl']} | {r['N']} | {r['causal']} | error: {r['error']} ||||||")
            continue
        base = naive_rows.get((r["N"], r["causal"]), {})
        speed = base.get("ms", math.nan) / r["ms"]
        mem = r.get("temp_mib" if on_gpu else "peak_mib")
        base_mem = base.get("temp_mib" if on_gpu else "peak_mib")
        mem_ratio = base_mem / mem if mem and base_mem else math.nan
        mem_text = "n/a" if mem is None else f"{mem:.0f}"
        err = r.get("err")
        lines.append(
            f"| {r['impl']} | {r['N']} | {r['causal']} | {r['ms']:.3g} | {speed:.2f} | "
            f"{r['tflops']:.3g} | {mem_text} | {mem_ratio:.1f} | "
            f"{'-' if err is None else f'{err:.1e}'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
