"""The `tlir` command: show, compile, run, dot and demo.

    tlir show FILE [--shape Q=1x64x64 ...]
    tlir compile FILE [--pipeline tile-flash,dead-code] [--print-after-all] [--print-changes]
                 [--print-diff] [--timing] [--emit ir|jaxpr|hlo|python] [--shape ...] [--explain]
    tlir run FILE --shape Q=1x64x64 ... [--backend jax|numpy] [--seed N] [--dtype float32]
             [--pipeline ...]
    tlir dot FILE -o OUT.dot|.svg|.png [--after tile-flash]
    tlir demo [--seq 2048] [--d-model 512] [--heads 8] [--no-causal] [--batch 1]

FILE is tlir JSON, the Rust crate's JSON (content starting with '{') or the text IR; `-` reads
stdin. A pipeline is a comma-separated list of pass names, each optionally with options, as in
`tile-flash{block_q=0,block_kv=256}`; without --pipeline, `compile` and `run` use
`backends.jax.default_pipeline()`, the default of `backends.jax.compile` on JAX's default
platform. A PRNG key input (the key operand of a dropout flash node) needs no --shape: `run`
makes it from --seed. Bad input prints one line `tlir: error: ...` and exits with 2 (a bad
command line) or 1 (anything else). JAX is imported only by the verbs that run, emit jaxpr/hlo
or pick the default pipeline, so `tlir show` stays fast.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import passes
import tlir
from passes import PassManager, make_pass
from passes.registry import Pass
from tlir import EinsumGraph, FlashSpec, OpSpec, TlirError
from tlir.walk import bindings, regions

Shape = tuple[int, ...]
DTYPES = ("float32", "bfloat16", "float16")


class UsageError(Exception):
    """A bad command line: exit status 2."""


class CliError(Exception):
    """Any other failure the CLI reports itself: exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse with errors raised as UsageError, so main prints one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# ------------------------------------------------------------------------------------ inputs


def _shape_arg(text: str) -> tuple[str, Shape]:
    match = re.fullmatch(r"\s*([^=\s]+)\s*=\s*([0-9]+(?:\s*[x,]\s*[0-9]+)*)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected NAME=DIMS such as Q=2x40x64, found {text!r}")
    name, dims = match.groups()
    return name, tuple(int(d) for d in re.split(r"\s*[x,]\s*", dims))


def load_graph(path: str) -> EinsumGraph:
    """Read tlir JSON, Rust JSON or text IR from `path` (`-`: stdin); validate it."""
    where = "<stdin>" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot read {where}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise CliError(f"cannot read {where}: not UTF-8 text ({error.reason})") from None
    if not text.strip():
        raise CliError(f"{where}: the file is empty; expected a graph (JSON or text IR)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", tlir.SpecWarning)
        try:
            if text.lstrip().startswith("{"):
                graph = EinsumGraph.from_json(text)
            else:
                graph = tlir.parse_text(text)
            graph.validate()
        except TlirError as error:
            raise type(error)(f"{where}: {error}") from None
    for warning in caught:
        print(f"tlir: warning: {where}: {warning.message}", file=sys.stderr)
    return graph


def _key_tensors(graph: EinsumGraph) -> set[int]:
    """Tensors of `graph` that some node reads as a PRNG key (see `key_inputs`)."""
    keys: set[int] = set()
    for node in graph.nodes:
        spec = node.parsed
        key_at = spec.operand("dropout_key") if isinstance(spec, FlashSpec) else None
        if key_at is not None:
            keys.add(node.inputs[key_at])
        elif isinstance(spec, OpSpec) and spec.op == "dropout_keep":
            keys.add(node.inputs[0])
        for role, body in regions(node):
            inner = _key_tensors(body)
            keys.update(t for t, parameter in bindings(node, role) if parameter in inner)
    return keys


def key_inputs(graph: EinsumGraph) -> list[int]:
    """The graph inputs that are PRNG keys: the dropout_key operand of a flash node, or the key
    operand of a dropout_keep op (after tile-flash), followed through loop and custom_vjp bodies."""
    keys = _key_tensors(graph)
    return [t for t in graph.inputs if t in keys]


def input_shapes(
    graph: EinsumGraph, pairs: Sequence[tuple[str, Shape]] | None, require_all: bool
) -> dict[int, Shape] | None:
    """--shape NAME=DIMS pairs as {input tensor: shape}; None when none were given.

    PRNG key inputs take no --shape: they are typed keys of shape [] (added when shapes are)."""
    if not pairs and not require_all:
        return None
    by_name: dict[str, int] = {}
    for t in graph.inputs:
        by_name.setdefault(graph.tensors[t], t)
    listed = ", ".join(by_name) or "none"
    keys = key_inputs(graph)
    shapes: dict[int, Shape] = {t: () for t in keys}
    given: set[str] = set()
    for name, shape in pairs or ():
        if name not in by_name:
            raise UsageError(
                f"--shape {name}: the graph has no input {name!r}; its inputs: {listed}"
            )
        if by_name[name] in keys:
            raise UsageError(
                f"--shape {name}: {name} is a PRNG key input (a dropout key), which takes no "
                "--shape; `tlir run` makes it from --seed"
            )
        if name in given:
            raise UsageError(f"--shape {name} is given twice")
        given.add(name)
        shapes[by_name[name]] = shape
    missing = [name for name, t in by_name.items() if t not in shapes]
    if missing:
        raise UsageError(
            f"missing --shape for input(s) {', '.join(missing)}; every input needs one, "
            f"as --shape {missing[0]}=DIMS"
        )
    return shapes


def all_shapes(graph: EinsumGraph, shapes: Mapping[int, Shape]) -> dict[int, Shape]:
    try:
        return tlir.infer_shapes(graph, shapes)
    except TlirError as error:
        given = ", ".join(f"{graph.tensors[t]}={'x'.join(map(str, s))}" for t, s in shapes.items())
        raise type(error)(f"the shapes {given} do not fit the graph: {error}") from None


def parse_pipeline(
    text: str | None, flag: str = "--pipeline", graph: EinsumGraph | None = None
) -> list[Pass]:
    """A pipeline string (passes.parse_pipeline); a bad one is a usage error.

    None: `backends.jax.default_pipeline(graph=graph)`, what `backends.jax.compile` runs on
    this platform (importing JAX to ask for the platform)."""
    if text is None:
        from backends import jax as jax_backend

        default = jax_backend.default_pipeline(graph=graph)
        return [make_pass(p) if isinstance(p, str) else p for p in default]
    try:
        return passes.parse_pipeline(text)
    except TlirError as error:
        raise UsageError(f"{flag}: {error}") from None


def _key_data(seed: int) -> Any:
    """The raw uint32[2] data of `jax.random.key(seed)`, as a numpy array."""
    import jax
    import numpy as np

    return np.asarray(jax.random.key_data(jax.random.key(seed)))


def _random_inputs(
    graph: EinsumGraph, shapes: Mapping[int, Shape], seed: int, backend: str
) -> list[Any]:
    """Random normal float32 arrays, and for PRNG key inputs the key of `seed`: a typed
    `jax.random.key(seed)` for JAX, its raw uint32[2] data for numpy."""
    import numpy as np

    rng = np.random.default_rng(seed)
    keys = key_inputs(graph)
    arrays: list[Any] = []
    for t in graph.inputs:
        if t not in keys:
            arrays.append(rng.standard_normal(shapes[t], dtype=np.float32))
        elif backend == "jax":
            import jax

            arrays.append(jax.random.key(seed))
        else:
            arrays.append(_key_data(seed))
    return arrays


def _jax_dtype(name: str) -> Any:
    import jax.numpy as jnp

    return jnp.dtype(name)


# ------------------------------------------------------------------------------------- verbs


def cmd_show(args: argparse.Namespace) -> int:
    graph = load_graph(args.file)
    shapes = input_shapes(graph, args.shape, require_all=False)
    print(tlir.format_graph(graph, shapes=all_shapes(graph, shapes) if shapes else None))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    graph = load_graph(args.file)
    pipeline = parse_pipeline(args.pipeline, graph=graph)
    needs_shapes = args.emit in ("jaxpr", "hlo")
    shapes = input_shapes(graph, args.shape, require_all=needs_shapes)
    known = all_shapes(graph, shapes) if shapes else None
    sections = args.explain or args.print_after_all or args.print_changes or args.print_diff
    manager = PassManager(
        pipeline,
        print_after_all=args.print_after_all,
        print_changes=args.print_changes,
        print_diff=args.print_diff,
        stream=sys.stdout,
    )
    try:
        lowered = manager.run(graph)
    except TlirError:
        if args.explain:  # say why before the error does
            _explain(graph, pipeline, known, None)
        raise
    if args.explain:
        _explain(graph, pipeline, known, lowered)
    emit = args.emit or ("none" if args.explain else "ir")
    if emit != "none":
        if sections or args.timing:
            print(f"// ----- emit {emit} -----")
        print(_emit(emit, graph, lowered, manager, shapes, args.dtype).rstrip("\n"))
    if args.timing:
        print("// ----- pass timing -----")
        print(manager.timing_table())
    return 0


def _explain(
    graph: EinsumGraph,
    pipeline: Sequence[Pass],
    shapes: Mapping[int, Shape] | None,
    lowered: EinsumGraph | None,
) -> None:
    from app.explain import explain

    print(explain(graph, pipeline, shapes, lowered), flush=True)


def _emit(
    emit: str,
    graph: EinsumGraph,
    lowered: EinsumGraph,
    manager: PassManager,
    shapes: Mapping[int, Shape] | None,
    dtype: str,
) -> str:
    if emit == "ir":
        return tlir.format_graph(lowered, shapes=all_shapes(lowered, shapes) if shapes else None)
    if emit == "python":
        from backends.jax_source import render

        return render(lowered, all_shapes(lowered, shapes) if shapes else None)
    assert shapes is not None
    import jax

    from backends.jax import Compiled

    compiled = Compiled(graph, lowered, manager.trace)
    keys = key_inputs(lowered)
    key_type = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
    specs = [
        key_type if t in keys else jax.ShapeDtypeStruct(shapes[t], _jax_dtype(dtype))
        for t in lowered.inputs
    ]
    if emit == "jaxpr":
        return str(compiled.jaxpr(*specs))
    return compiled.hlo(*specs)


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    graph = load_graph(args.file)
    shapes = input_shapes(graph, args.shape, require_all=True)
    assert shapes is not None
    all_shapes(graph, shapes)
    arrays = _random_inputs(graph, shapes, args.seed, args.backend)
    if args.backend == "numpy":
        from backends import numpy as numpy_backend

        run_graph = _numpy_graph(graph, args.pipeline)
        keys = key_inputs(graph)
        if args.dtype == "bfloat16":
            import ml_dtypes

            dtype: Any = ml_dtypes.bfloat16
        else:
            dtype = args.dtype
        arrays = [a if t in keys else a.astype(dtype) for t, a in zip(graph.inputs, arrays)]
        start = time.perf_counter()
        outputs = numpy_backend.run(run_graph, *arrays)
        timing = f"wall time: {(time.perf_counter() - start) * 1e3:.1f} ms (numpy, float64)"
    else:
        timing, outputs = _run_jax(graph, arrays, args)
    for t, value in zip(graph.outputs, outputs):
        data = np.asarray(value).astype(np.float64)
        shape = "x".join(str(s) for s in np.shape(value)) or "scalar"
        print(
            f"{graph.tensors[t]}: shape {shape} dtype {np.asarray(value).dtype} "
            f"sum={data.sum():+.6e} mean|x|={np.abs(data).mean() if data.size else 0.0:.6e}"
        )
    print(timing)
    return 0


def _numpy_graph(graph: EinsumGraph, pipeline: str | None) -> EinsumGraph:
    """The graph the numpy backend runs: the original one, or the --pipeline's result."""
    if pipeline is not None:
        return PassManager(parse_pipeline(pipeline)).run(graph)
    dropout = [
        node.spec
        for node in graph.nodes
        if isinstance(node.parsed, FlashSpec) and node.parsed.dropout > 0
    ]
    if dropout:
        raise CliError(
            f"the numpy backend computes flash nodes directly and has no dropout ({dropout[0]!r}); "
            "run the tiled graph with --pipeline tile-flash (its dropout masks then come from "
            "numpy's generator, not JAX's)"
        )
    return graph


def _run_jax(graph: EinsumGraph, arrays: list[Any], args: argparse.Namespace) -> tuple[str, Any]:
    import jax
    import jax.numpy as jnp

    from backends import jax as jax_backend

    if args.pipeline is None:  # what compile does by default, retiling included
        compiled = jax_backend.compile(graph)
    else:
        compiled = jax_backend.compile(graph, parse_pipeline(args.pipeline, graph=graph))
    keys = key_inputs(graph)
    inputs = [
        a if t in keys else jnp.asarray(a, dtype=_jax_dtype(args.dtype))
        for t, a in zip(graph.inputs, arrays)
    ]
    start = time.perf_counter()
    outputs = jax.block_until_ready(compiled(*inputs))
    first = time.perf_counter() - start
    start = time.perf_counter()
    outputs = jax.block_until_ready(compiled(*inputs))
    second = time.perf_counter() - start
    timing = (
        f"wall time: {first * 1e3:.1f} ms first call (includes jit compile), "
        f"{second * 1e3:.1f} ms second call (jax, {jax.devices()[0].platform})"
    )
    return timing, outputs


def cmd_dot(args: argparse.Namespace) -> int:
    from tlir.dot import to_dot

    out = args.output
    fmt = "dot" if out == "-" else Path(out).suffix.lower().lstrip(".")
    if fmt not in ("dot", "gv", "svg", "png"):
        raise UsageError(f"-o {out}: expected a name ending in .dot, .svg or .png")
    graph = load_graph(args.file)
    if args.after is not None:
        graph = PassManager(parse_pipeline(args.after, "--after")).run(graph)
    shapes = input_shapes(graph, args.shape, require_all=False)
    name = "stdin" if args.file == "-" else Path(args.file).stem
    text = to_dot(graph, name, all_shapes(graph, shapes) if shapes else None)
    if out == "-":
        sys.stdout.write(text)
        return 0
    dot_path = Path(out) if fmt in ("dot", "gv") else Path(out).with_suffix(".dot")
    try:
        dot_path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot write {dot_path}: {error.strerror or error}") from None
    if fmt in ("dot", "gv"):
        print(f"wrote {dot_path}")
        return 0
    graphviz = shutil.which("dot")
    if graphviz is None:
        raise CliError(
            f"Graphviz is not installed (no 'dot' program on PATH), so {out} was not made; "
            f"wrote the DOT form to {dot_path} instead"
        )
    done = subprocess.run(
        [graphviz, f"-T{fmt}", str(dot_path), "-o", out],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise CliError(f"Graphviz 'dot' failed on {dot_path} (status {done.returncode}): {detail}")
    print(f"wrote {dot_path} and {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import DemoConfig, run_demo

    for name in ("seq", "d_model", "heads", "batch", "runs"):
        if getattr(args, name) < 1:
            raise UsageError(
                f"--{name.replace('_', '-')} must be >= 1, found {getattr(args, name)}"
            )
    config = DemoConfig(
        seq=args.seq,
        d_model=args.d_model,
        heads=args.heads,
        causal=not args.no_causal,
        batch=args.batch,
        seed=args.seed,
        runs=args.runs,
    )
    return run_demo(config)


# ------------------------------------------------------------------------------------ parser

DEFAULT_HELP = (
    "backends.jax.default_pipeline() for JAX's default platform: "
    "tile-flash{block_q=1024},dead-code on a CPU; on a GPU "
    "tile-flash{block_q=128,block_kv=128,bwd_block_q=4096,bwd_block_kv=1024},dead-code "
    "(the forward runs as a Pallas kernel), or 4096x1024 both ways for dropout; "
    "--pipeline tile-flash,dead-code keeps the spec's own tiles"
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tlir", description="The tlir einsum-graph compiler.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        sub = verbs.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    def file_and_shapes(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "file", metavar="FILE", help="tlir JSON, Rust JSON or text IR; - for stdin"
        )
        sub.add_argument(
            "--shape",
            action="append",
            type=_shape_arg,
            metavar="NAME=DIMS",
            help="shape of a graph input, e.g. Q=2x40x64 (repeat for each input)",
        )

    show = verb("show", cmd_show, "print the text IR (with shapes when --shape is given)")
    file_and_shapes(show)

    compile_ = verb("compile", cmd_compile, "run a pass pipeline and emit the result")
    file_and_shapes(compile_)
    compile_.add_argument(
        "--pipeline",
        metavar="PASSES",
        help=f"comma-separated passes (default: {DEFAULT_HELP}); "
        f"available: {', '.join(passes.available())}",
    )
    compile_.add_argument("--print-after-all", action="store_true", help="IR after every pass")
    compile_.add_argument(
        "--print-changes", action="store_true", help="IR after passes that changed it"
    )
    compile_.add_argument(
        "--print-diff", action="store_true", help="a diff after passes that changed it"
    )
    compile_.add_argument("--timing", action="store_true", help="a per-pass timing table")
    compile_.add_argument(
        "--emit",
        choices=("ir", "jaxpr", "hlo", "python"),
        help="what to print at the end (default: ir; jaxpr and hlo need --shape for every input)",
    )
    compile_.add_argument("--dtype", choices=DTYPES, default="float32", help="for jaxpr and hlo")
    compile_.add_argument(
        "--explain", action="store_true", help="why each flash node is tiled or not"
    )

    run = verb("run", cmd_run, "run a graph on random normal inputs and print checksums")
    file_and_shapes(run)
    run.add_argument("--backend", choices=("jax", "numpy"), default="jax", help="default jax")
    run.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random inputs (numpy default_rng) and of a dropout key (default 0)",
    )
    run.add_argument("--dtype", choices=DTYPES, default="float32", help="input dtype")
    run.add_argument(
        "--pipeline",
        metavar="PASSES",
        help=f"passes to run first (jax default: {DEFAULT_HELP}; numpy default: none, the "
        "flash nodes computed directly in float64)",
    )

    dot = verb(
        "dot",
        cmd_dot,
        "draw the graph with Graphviz (loop bodies, custom_vjp bodies and grad bodies as clusters)",
    )
    file_and_shapes(dot)
    dot.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.dot, .svg or .png")
    dot.add_argument("--after", metavar="PASSES", help="draw the graph after these passes")

    demo = verb("demo", cmd_demo, "flash attention: passes, JAX, float64 check, time and memory")
    demo.add_argument("--seq", type=int, default=2048, help="sequence length (default 2048)")
    demo.add_argument("--d-model", type=int, default=512, help="model width (default 512)")
    demo.add_argument("--heads", type=int, default=8, help="attention heads (default 8)")
    demo.add_argument("--no-causal", action="store_true", help="attend to every key")
    demo.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    demo.add_argument("--runs", type=int, default=5, help="timed runs after the warm-up (5)")
    return parser


def _error(message: str) -> None:
    lines = str(message).strip().splitlines() or ["unknown error"]
    print(f"tlir: error: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(f"  {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UsageError as error:
        _error(str(error))
        return 2
    except BrokenPipeError:
        # The reader went away (`tlir ... | head`): silence the final flush of stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (TlirError, CliError) as error:
        _error(str(error))
        return 1
    except OSError as error:
        _error(f"{error.filename + ': ' if error.filename else ''}{error.strerror or error}")
        return 1
    except ValueError as error:
        _error(f"{type(error).__name__}: {error}")
        return 1
    except KeyboardInterrupt:
        print("tlir: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
