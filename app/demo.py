"""`tlir demo` (and `make demo`): flash attention from graph to tiled JAX loop, checked and timed.

Steps: build the seed's flash-attention graph; run the pass pipeline that `backends.jax.compile`
runs on this platform, printing the IR after tile-flash in full (one custom_vjp node: the tiled
forward loops and, as its grad body, the backward loops) and a one-line summary after the other
passes; jit the tiled graph and naive attention (einsum + softmax + einsum) with JAX; compute a
float64 reference with `backends.numpy` on the original graph (the flash node computed
directly); compare, then print time (median of a few runs after a warm-up) and peak memory side
by side. Peak memory is the rise of the peak resident set over one execution: reset the peak by
writing "5" to /proc/self/clear_refs, then read VmHWM from /proc/self/status minus the VmRSS
before. JAX is imported inside `run_demo`.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

import tlir
from passes import PassManager, TileFlash
from tlir import EinsumGraph, LoweringError
from tlir.walk import walk


@dataclass(frozen=True)
class DemoConfig:
    seq: int = 2048
    d_model: int = 512
    heads: int = 8
    causal: bool = True
    batch: int = 1
    seed: int = 0
    runs: int = 5


def build_graph(config: DemoConfig) -> EinsumGraph:
    """The seed's flash-attention graph on tensors Q, K, V."""
    graph = EinsumGraph()
    for name in ("Q", "K", "V"):
        graph.add_tensor(name)
    attention_config = tlir.FlashAttentionConfig(config.d_model, config.heads)
    tlir.FlashAttention(attention_config.with_causal(config.causal)).build_flash_graph(graph)
    return graph


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0]) * 1024
    return values


def _release_free_memory() -> None:
    """Return freed heap pages to the OS, so earlier runs do not hide this run's peak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(run: Callable[[], Any]) -> tuple[Any, int | None]:
    """(run(), the rise of the peak resident set during it in bytes, or None without /proc)."""
    _release_free_memory()
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        before = _status()["VmRSS"]
    except (OSError, KeyError):
        return run(), None
    result = run()
    try:
        peak = _status()["VmHWM"]
    except (OSError, KeyError):
        return result, None
    return result, max(peak - before, 0)


def _mib(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:.1f} MiB"


def _median_seconds(run: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_demo(config: DemoConfig, out: TextIO = sys.stdout) -> int:
    """Run the demo, printing as it goes; returns 0, or raises LoweringError if a result
    disagrees with the float64 reference."""
    started = time.perf_counter()

    def step(number: int, text: str) -> None:
        elapsed = time.perf_counter() - started
        print(f"\n[{number}/5] {text}  ({elapsed:.1f} s)", file=out, flush=True)

    mode = "causal" if config.causal else "not causal"
    step(
        1,
        f"building the flash-attention graph: d_model={config.d_model}, heads={config.heads}, "
        f"{mode}, seq={config.seq}, batch={config.batch}",
    )
    graph = build_graph(config)
    shape = (config.batch, config.seq, config.d_model)
    shapes = tlir.infer_shapes(graph, {"Q": shape, "K": shape, "V": shape})
    print(tlir.format_graph(graph, shapes=shapes), file=out)

    import jax

    from backends.jax import Compiled, default_pipeline
    from app.reference import naive_attention

    step(2, f"running the pass pipeline of backends.jax.compile on {jax.default_backend()}")
    manager = PassManager(default_pipeline(graph=graph))
    lowered = manager.run(graph)
    _print_passes(manager, out)
    print(manager.timing_table(), file=out)

    step(3, "compiling with JAX (jit): the tiled graph and naive attention")

    rng = np.random.default_rng(config.seed)
    host = [rng.standard_normal(shape, dtype=np.float32) for _ in range(3)]
    inputs = [jax.device_put(x) for x in host]
    tiled_compiled = Compiled(graph, lowered, manager.trace)
    tiled_jit = tiled_compiled.jitted

    def naive_fn(q: Any, k: Any, v: Any) -> Any:
        return naive_attention(q, k, v, config.heads, config.causal)

    compile_start = time.perf_counter()
    tiled = tiled_jit.lower(*inputs).compile()
    naive = jax.jit(naive_fn).lower(*inputs).compile()
    device = jax.devices()[0]
    kind = "" if device.device_kind == device.platform else f" ({device.device_kind})"
    seconds = time.perf_counter() - compile_start
    print(f"compiled both in {seconds:.2f} s on {device.platform}{kind}", file=out)
    # What the parallel query-tile loop became: one Pallas kernel on a GPU, XLA loops elsewhere.
    for line in tiled_compiled.kernels or ["parallel loops: XLA loops (Pallas kernels on a GPU)"]:
        print(line, file=out)

    step(
        4, "float64 reference: backends.numpy on the original graph (flash node computed directly)"
    )
    reference_start = time.perf_counter()
    (reference,), reference_memory = peak_memory(lambda: _float64_reference(graph, host))
    reference_seconds = time.perf_counter() - reference_start

    step(5, f"running: peak memory of one execution, then the median time of {config.runs} runs")
    rows = []
    results = {}
    measured: dict[str, tuple[float, int | None]] = {}
    for name, compiled in (("tiled (tile-flash)", tiled), ("naive (einsum+softmax)", naive)):

        def execute(compiled: Any = compiled) -> Any:
            return jax.block_until_ready(compiled(*inputs))

        result, memory = peak_memory(execute)
        results[name] = np.asarray(result[0] if isinstance(result, tuple) else result)
        seconds = _median_seconds(execute, config.runs)
        measured[name] = (seconds, memory)
        error = float(np.max(np.abs(results[name] - reference)))
        rows.append((name, f"{seconds * 1e3:.1f} ms", _mib(memory), f"{error:.2e}"))
    rows.append(
        (
            "float64 reference (numpy)",
            f"{reference_seconds * 1e3:.1f} ms",
            _mib(reference_memory),
            "-",
        )
    )
    _table(["", "time", "peak memory", "max |err| vs float64"], rows, out)
    (tiled_s, tiled_m), (naive_s, naive_m) = measured.values()
    memory_ratio = f", {naive_m / tiled_m:.1f}x less peak memory" if tiled_m and naive_m else ""
    print(f"tiled vs naive: {naive_s / tiled_s:.2f}x the speed{memory_ratio}", file=out)
    if device.platform != "cpu":
        print(f"(peak memory is host memory; the arrays live on {device.platform})", file=out)
    return _verdict(results, reference, out, time.perf_counter() - started)


def _count(graph: EinsumGraph, kinds: dict[str, int]) -> int:
    """Nodes of `graph` and of every body and grad body in it; counts by kind into `kinds`."""
    kinds.update(Counter(visit.node.kind or "?" for visit in walk(graph)))
    return sum(kinds.values())


def _print_passes(manager: PassManager, out: TextIO) -> None:
    """The IR after tile-flash in full; after any other pass, one summary line (the tiled IR is
    long, and those passes change little of it)."""
    for record in manager.trace:
        status = "" if record.changed else " (unchanged)"
        print(f"// ----- IR after {record.name}{status} -----", file=out)
        if record.name == TileFlash.name:
            print(record.graph, file=out)
            continue
        kinds: dict[str, int] = {}
        total = _count(record.graph, kinds)
        listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        print(
            f"// {len(record.graph.nodes)} top-level node(s), {total} in all ({listed})"
            + ("" if record.changed else "; the same IR as above"),
            file=out,
        )


def _float64_reference(graph: EinsumGraph, host: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    from backends import numpy as numpy_backend

    return numpy_backend.run(graph, *host)


def _table(header: list[str], rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in [tuple(header), *rows]) for i in range(len(header))]
    for row in [tuple(header), *rows]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        print("  ".join(cells), file=out)


def _verdict(
    results: dict[str, np.ndarray], reference: np.ndarray, out: TextIO, elapsed: float
) -> int:
    tolerance = 1e-4 * max(1.0, float(np.max(np.abs(reference))))
    failed = []
    for name, result in results.items():
        error = float(np.max(np.abs(result - reference)))
        if not error <= tolerance:  # also catches NaN
            failed.append(f"{name} differs by {error:.2e}")
    if failed:
        raise LoweringError(
            f"demo: {'; '.join(failed)} from the float64 reference (tolerance {tolerance:.1e})"
        )
    print(f"\nok: both agree with the float64 reference within {tolerance:.1e}", file=out)
    print(f"demo finished in {elapsed:.1f} s", file=out)
    return 0
