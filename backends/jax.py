"""The JAX backend: `lower(graph)` returns a pure, jit-able, differentiable JAX function.

Loop nodes become `jax.lax.fori_loop` (a scan when both bounds are constants, a while loop when a
bound depends on an enclosing loop's index: block skipping); custom_vjp nodes become
`jax.custom_vjp` functions whose backward runs the node's grad body; plain einsum nodes go
through opt_einsum with its jax
backend, the contraction path planned once per operand shapes (at trace time, cached); einsums
with `acc=float32` use `jnp.einsum(..., preferred_element_type=float32)` so bf16/fp16 inputs
accumulate in float32; reshape, elementwise and reduce nodes use jax.numpy. A loop marked
`parallel` can instead become one Pallas kernel (backends/kernel.py; `kernels=` chooses).
`compile(graph)` runs the pass pipeline, lowers and jits, keeping the lowered IR (`.graph`), the
pass trace, and what each parallel loop became (`.kernels`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import opt_einsum
from jax import lax

from backends.interpreter import Interpreter, check_inputs
from tlir import EinsumGraph, EinsumNode, LoweringError
from tlir.spec import EinsumSpec, FlashSpec, LoopSpec
from tlir.walk import walk

Array = Any


@functools.lru_cache(maxsize=512)
def _contraction(text: str, shapes: tuple[tuple[int, ...], ...]) -> Callable[..., Array]:
    return opt_einsum.contract_expression(text, *shapes)


class JaxInterpreter(Interpreter):
    name = "jax backend"

    def __init__(self, kernels: Any = None, required: bool = False) -> None:
        """`kernels`: KernelOptions to run parallel loops as Pallas kernels, None for XLA loops.
        `required`: a parallel loop that cannot be a kernel is an error, not XLA loops."""
        super().__init__(jnp)
        self.kernels = kernels
        self.required = required
        self.kernel_log: list[str] = []

    def node(self, node: EinsumNode, operands: list[Array]) -> Sequence[Array]:
        if self.kernels is not None and node.attr("parallel") is not None:
            from backends import kernel

            where = f"loop {node.spec!r} [parallel={node.attr('parallel')}]"
            try:
                results = kernel.lower_parallel_loop(node, operands, self.kernels)
            except kernel.NotAKernel as reason:
                if self.required:
                    raise
                self.kernel_log.append(f"{where}: XLA loops, not a kernel: {reason}")
            else:
                self.kernel_log.append(f"{where}: Pallas kernel")
                return results
        return super().node(node, operands)

    def einsum(self, node: EinsumNode, spec: EinsumSpec, operands: list[Array]) -> Array:
        accumulate = node.attr("acc")
        if accumulate is not None:
            found = [str(x.dtype) for x in operands if not jnp.issubdtype(x.dtype, jnp.inexact)]
            if found:
                raise LoweringError(
                    f"einsum {spec.text!r} accumulates in {accumulate} and needs floating "
                    f"operands, found {', '.join(found)}"
                )
            return jnp.einsum(spec.text, *operands, preferred_element_type=jnp.dtype(accumulate))
        shapes = tuple(tuple(x.shape) for x in operands)
        return _contraction(spec.text, shapes)(*operands, backend="jax")

    def flash(self, spec: FlashSpec, operands: list[Array]) -> list[Array]:
        raise LoweringError(
            f"flash node {spec.text!r} is left: run the 'tile-flash' pass first "
            "(backends.jax.compile runs it)"
        )

    def loop(self, body: EinsumGraph, spec: LoopSpec, operands: list[Array]) -> list[Array]:
        lo, hi = operands[0], operands[1]
        if not (isinstance(lo, int) and isinstance(hi, int)):
            # A bound that depends on the enclosing loop's index: a while loop (block skipping).
            lo, hi = jnp.asarray(lo, jnp.int32), jnp.asarray(hi, jnp.int32)
        invariants = operands[2 : len(operands) - spec.carry]
        carried = tuple(operands[len(operands) - spec.carry :])

        def step(j: Array, carry: tuple[Array, ...]) -> tuple[Array, ...]:
            return tuple(self.run_graph(body, [j, *invariants, *carry]))

        return list(lax.fori_loop(lo, hi, step, carried))

    def custom_vjp(self, node: EinsumNode, operands: list[Array]) -> Sequence[Array]:
        """`jax.custom_vjp`: the body forward, the grad body as its derivative.

        Residuals are the operands and the results, so a tiled flash node keeps O(N) values
        for its backward instead of every step's scores.
        """
        forward, backward = node.body, node.grad_body
        assert forward is not None and backward is not None

        @jax.custom_vjp
        def region(*xs: Array) -> tuple[Array, ...]:
            return tuple(self.run_graph(forward, list(xs)))

        def region_forward(*xs: Array) -> tuple[tuple[Array, ...], tuple]:
            results = region(*xs)
            return results, (xs, results)

        def region_backward(residuals: tuple, cotangents: tuple) -> tuple:
            xs, results = residuals
            grads = self.run_graph(backward, [*xs, *results, *cotangents])
            # A grad body may write a scalar 0 for an operand it does not differentiate.
            return tuple(
                jnp.broadcast_to(g, x.shape).astype(x.dtype)
                if jnp.issubdtype(x.dtype, jnp.inexact)
                else None
                for x, g in zip(xs, grads)
            )

        region.defvjp(region_forward, region_backward)
        return list(region(*operands))

    def cast(self, x: Array, dtype: Any) -> Array:
        return jnp.asarray(x).astype(dtype)

    def tile(self, x: Array, axis: int, start: Array, size: int) -> Array:
        # tile-flash pads K and V once before the loop; pad here only for hand-written IR.
        padded = self.pad(x, axis, size)
        return lax.dynamic_slice_in_dim(padded, start, size, axis)

    def dropout_keep(self, key: Any, i: Any, j: Any, rate: float, shape: list[int]) -> Array:
        key = jnp.asarray(key) if not hasattr(key, "dtype") else key
        if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.dtype != jnp.uint32 or key.shape != (2,):
                raise LoweringError(
                    "a dropout key must be jax.random.key(seed) or its uint32[2] key data, "
                    f"found {key.dtype}{list(key.shape)}"
                )
            key = jax.random.wrap_key_data(key)
        elif key.shape != ():
            raise LoweringError(
                f"a dropout key must be a single key, found shape {list(key.shape)}"
            )
        tile_key = jax.random.fold_in(jax.random.fold_in(key, i), j)
        return jax.random.bernoulli(tile_key, 1.0 - rate, shape)

    def put_tile(self, x: Array, axis: int, start: Array, tile: Array) -> Array:
        return lax.dynamic_update_slice_in_dim(x, tile.astype(x.dtype), start, axis)


def _flash_nodes(graph: EinsumGraph) -> list[str]:
    return [visit.name for visit in walk(graph) if visit.node.kind == "flash"]


KERNEL_MODES = ("auto", "pallas", "interpret", "xla")


def _interpreter(kernels: Any) -> JaxInterpreter:
    from backends.kernel import KernelOptions

    if isinstance(kernels, KernelOptions):
        return JaxInterpreter(kernels, required=True)
    if kernels not in KERNEL_MODES:
        raise LoweringError(
            f"kernels must be one of {', '.join(KERNEL_MODES)} or a KernelOptions, "
            f"found {kernels!r}"
        )
    if kernels == "auto":
        on_gpu = jax.default_backend() == "gpu"
        return JaxInterpreter(KernelOptions() if on_gpu else None)
    if kernels == "xla":
        return JaxInterpreter()
    return JaxInterpreter(KernelOptions(interpret=kernels == "interpret"), required=True)


def lower(graph: EinsumGraph, kernels: Any = "xla") -> Callable[..., tuple[Array, ...]]:
    """A pure JAX function of the graph inputs (positional) returning a tuple of outputs.

    `kernels` says what becomes of `parallel` loops: "xla" (XLA loops), "pallas" (one Pallas
    Triton kernel each, or a LoweringError saying why not), "interpret" (the same kernels run
    by Pallas' interpreter, on any device: for tests), "auto" (kernels on a GPU where the loop
    allows, XLA loops otherwise), or a `backends.kernel.KernelOptions`. The function's
    `kernel_log` lists, once traced, what each parallel loop became.
    """
    interpreter = _interpreter(kernels)
    graph.validate()
    flash = _flash_nodes(graph)
    if flash:
        raise LoweringError(
            f"{flash[0]} is a flash node: run the 'tile-flash' pass before lowering "
            "(passes.PassManager().run(graph), or backends.jax.compile(graph))"
        )

    def lowered(*inputs: Array) -> tuple[Array, ...]:
        arrays = [jnp.asarray(x) for x in inputs]
        check_inputs(graph, arrays)  # at trace time: shapes are static
        return interpreter.run_graph(graph, arrays)

    lowered.__doc__ = f"JAX function of tlir graph:\n{graph}"
    lowered.kernel_log = interpreter.kernel_log  # type: ignore[attr-defined]
    return lowered


class Compiled:
    """A jitted graph: call it with the graph inputs; `.graph` is the lowered IR."""

    def __init__(
        self,
        graph: EinsumGraph,
        lowered: EinsumGraph,
        trace: list,
        kernels: Any = "auto",
        retile: Sequence[Any] | None = None,
    ) -> None:
        """`retile`: the pipeline for inputs whose parallel loops the kernel refuses (a head
        dim it cannot take), which then run the graph it writes as XLA loops; None: such loops
        run as XLA loops of `lowered`. `compile` sets it on a GPU, where `lowered` has the
        kernel's small tiles and XLA loops want large ones."""
        self.source = graph
        self.graph = lowered
        self.trace = trace
        self.retiled: EinsumGraph | None = None  # what ran for refused inputs, once any did
        self._retile = retile
        self._run_retiled: Callable[..., tuple[Array, ...]] | None = None
        if retile is None:
            run_lowered = lower(lowered, kernels)
        else:
            from backends.kernel import KernelOptions

            run_lowered = self._kernel_or_retiled(lower(lowered, KernelOptions()))
        self._kernel_log: list[str] = run_lowered.kernel_log  # type: ignore[attr-defined]

        def function(*inputs: Array) -> tuple[Array, ...]:
            # The source graph's rules first (a flash node's k and v lengths, h % g): the
            # lowered graph's generic checks would name internal nodes, or miss them.
            check_inputs(graph, [jnp.asarray(x) for x in inputs])
            return run_lowered(*inputs)

        self.function = function
        self.jitted = jax.jit(function)

    def _kernel_or_retiled(self, run_kernels: Callable) -> Callable:
        from passes.registry import describe_pipeline
        from backends.kernel import NotAKernel
        from passes import PassManager

        def run(*inputs: Array) -> tuple[Array, ...]:
            try:
                return run_kernels(*inputs)
            except NotAKernel as reason:
                manager = PassManager(self._retile)
                if self._run_retiled is None:
                    self.retiled = manager.run(self.source)
                    self._run_retiled = lower(self.retiled, "xla")
                run.kernel_log.append(  # type: ignore[attr-defined]
                    f"no kernel for these inputs ({reason}); ran "
                    f"{describe_pipeline(manager.passes)} as XLA loops (Compiled.retiled)"
                )
                return self._run_retiled(*inputs)

        run.kernel_log = run_kernels.kernel_log  # type: ignore[attr-defined]
        return run

    def __call__(self, *inputs: Array) -> tuple[Array, ...]:
        return self.jitted(*inputs)

    @property
    def kernels(self) -> list[str]:
        """What each parallel loop became (a Pallas kernel, or XLA loops and why), once traced."""
        return list(dict.fromkeys(self._kernel_log))

    def jaxpr(self, *inputs: Array) -> Any:
        return jax.make_jaxpr(self.function)(*inputs)

    def hlo(self, *inputs: Array) -> str:
        """What XLA receives, as StableHLO text."""
        return self.jitted.lower(*inputs).as_text()


# Block sizes by platform (measured in docs/benchmarks.md). The spec's Bq and Bc were chosen for
# a GPU kernel's SRAM; XLA runs each loop step as whole-array ops, so it wants other tiles. On a
# CPU, 1024 query rows by the spec's key tile (the seed's 128) measured fastest (2.8x naive at
# N = 4096, against 1.3x for 128x128). On a GPU the forward's query-tile loop runs as one Pallas
# kernel (backends/kernel.py), which wants tiles that fit a streaming multiprocessor:
# GPU_KERNEL_BLOCK_Q x GPU_KERNEL_BLOCK_KV; the backward stays XLA loops, where 4096 query rows
# by 1024 keys keep the device busy, still skip masked tiles, and keep the temporaries near
# 1 GiB at N = 16k. Dropout masks are drawn per tile, so a dropout graph's forward uses the
# backward's tiles too (and runs as XLA loops). Tiles never exceed the sequence.
CPU_BLOCK_Q = 1024
GPU_BLOCK_Q = 4096
GPU_BLOCK_KV = 1024
GPU_KERNEL_BLOCK_Q = 128
GPU_KERNEL_BLOCK_KV = 128


def _has_dropout(graph: EinsumGraph) -> bool:
    return any(
        isinstance(node.parsed, FlashSpec) and node.parsed.dropout > 0 for node in graph.nodes
    )


def default_pipeline(platform: str | None = None, graph: EinsumGraph | None = None) -> list:
    """The passes `compile` runs by default on `platform` (default: JAX's default backend),
    for `graph` (its flash nodes decide whether a GPU forward can run as a kernel)."""
    from passes import DEFAULT_PIPELINE, TileFlash

    platform = platform or jax.default_backend()
    if platform == "gpu" and not (graph is not None and _has_dropout(graph)):
        tile = TileFlash(
            block_q=GPU_KERNEL_BLOCK_Q,
            block_kv=GPU_KERNEL_BLOCK_KV,
            bwd_block_q=GPU_BLOCK_Q,
            bwd_block_kv=GPU_BLOCK_KV,
        )
    elif platform == "gpu":
        tile = TileFlash(block_q=GPU_BLOCK_Q, block_kv=GPU_BLOCK_KV)
    else:
        tile = TileFlash(block_q=CPU_BLOCK_Q)
    return [tile, *(name for name in DEFAULT_PIPELINE if name != TileFlash.name)]


def compile(
    graph: EinsumGraph, pipeline: str | Sequence[Any] | None = None, kernels: Any = "auto"
) -> Compiled:
    """Run the pass pipeline (default: `default_pipeline(graph=graph)`), lower, and jit.

    `kernels`: what `parallel` loops become (see `lower`); "auto" makes them Pallas kernels on
    a GPU. `Compiled.kernels` says, after the first call, what each one became.
    """
    from passes import PassManager

    manager = PassManager(default_pipeline(graph=graph) if pipeline is None else pipeline)
    lowered = manager.run(graph)
    retile = None
    if pipeline is None and kernels == "auto" and jax.default_backend() == "gpu":
        # Inputs the kernel refuses get the XLA loops' tiles, not the kernel's small ones.
        from passes import DEFAULT_PIPELINE, TileFlash

        xla_tiles = TileFlash(block_q=GPU_BLOCK_Q, block_kv=GPU_BLOCK_KV)
        retile = [xla_tiles, *(name for name in DEFAULT_PIPELINE if name != TileFlash.name)]
    return Compiled(graph, lowered, manager.trace, kernels, retile)
