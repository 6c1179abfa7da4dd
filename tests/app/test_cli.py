"""The `tlir` command, run as a subprocess (`python -m app.cli`), as a user runs it.

Fixtures in tests/app/data: the seed's causal flash graph (d_model 64, 4 heads, Bq=32, Bc=16)
as text IR and tlir JSON, and the seed's unfused multi-head graph as the Rust crate's JSON (with
the crate's `-:` merge-reshape typo); the same causal graph with dropout 0.1 is written by
`dropout_file`. Shapes are small: Q, K, V [1, 64, 64] -> 2 query tiles and 4 key tiles, or
[1, 50, 64] for a padded tail. tile-flash turns the flash node into one custom_vjp node: its body
holds the query-tile loop around the key-tile loop, its grad body the key-tile loop around the
query-tile loop.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tlir
from backends import numpy as numpy_backend
from app.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
FLASH_TEXT = DATA / "flash_causal.tlir"
FLASH_JSON = DATA / "flash_causal.json"
MHA_RUST = DATA / "mha_rust.json"
SHAPES = ["--shape", "Q=1x64x64", "--shape", "K=1x64x64", "--shape", "V=1x64x64"]
TAIL_SHAPES = ["--shape", "Q=1x50x64", "--shape", "K=1x50x64", "--shape", "V=1x50x64"]
NUMBER = r"[-+]?\d+\.\d+e[-+]\d+"


def tlir_cli(
    *args: object, stdin: str | None = None, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *map(str, args)],
        cwd=REPO,
        env=env,
        input=stdin,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok(*args: object, stdin: str | None = None, path: str | None = None) -> str:
    done = tlir_cli(*args, stdin=stdin, path=path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def flash_graph() -> tlir.EinsumGraph:
    return tlir.EinsumGraph.from_json(FLASH_JSON.read_text())


def dropout_file(tmp: Path) -> Path:
    """The fixture's causal flash graph with dropout 0.1: inputs Q, K, V, flash_dropout_key."""
    graph = tlir.EinsumGraph()
    for name in ("Q", "K", "V"):
        graph.add_tensor(name)
    config = tlir.FlashAttentionConfig(64, 4).with_causal(True).with_block_sizes(32, 16)
    tlir.FlashAttention(config.with_dropout(0.1)).build_flash_graph(graph)
    path = tmp / "flash_dropout.tlir"
    path.write_text(str(graph) + "\n")
    return path


# ------------------------------------------------------------------------------------- show


def test_show_reads_text_and_json_alike() -> None:
    from_text = ok("show", FLASH_TEXT)
    assert from_text == ok("show", FLASH_JSON)
    assert from_text == ok("show", "-", stdin=FLASH_TEXT.read_text())
    assert tlir.parse_text(from_text) == tlir.parse_text(FLASH_TEXT.read_text())
    assert 'flash "flash_bhqd,bhkd,bhkv->bhqv_32_16_causal"' in from_text


def test_show_rust_json_warns_about_the_seed_typo() -> None:
    done = tlir_cli("show", MHA_RUST)
    assert done.returncode == 0
    assert '%mha_attention_weights = elementwise "softmax_k" (%mha_scaled_scores)' in done.stdout
    assert re.fullmatch(
        r"tlir: warning: .*mha_rust\.json: spec 'bsh16-:bsd': read '-:'.*\n", done.stderr
    )


def test_show_with_shapes_prints_types_and_parses_back() -> None:
    out = ok("show", FLASH_JSON, *TAIL_SHAPES)
    assert out.startswith("graph(%Q: [1,50,64], %K: [1,50,64], %V: [1,50,64]) -> (%flash_output)")
    assert "(%flash_q_split) : [1,4,50,16]" in out
    assert str(tlir.parse_text(out)) == str(flash_graph())


def test_show_does_not_import_jax() -> None:
    code = (
        "import sys\nfrom app.cli import main\n"
        f"assert main(['show', {str(FLASH_JSON)!r}]) == 0\n"
        "assert 'jax' not in sys.modules, 'show imported jax'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------------ compile


def test_compile_emits_ir_without_flash_nodes() -> None:
    out = ok("compile", FLASH_JSON, "--pipeline", "tile-flash,dead-code")  # the spec's tiles
    assert " flash " not in out
    assert out.count('custom_vjp "custom_vjp"') == 1 and out.count("} grad {") == 1
    forward, backward = out.split("} grad {")
    # forward: query tiles (carrying out, lse) around key tiles (carrying acc, max, sum): first
    # the tiles every row sees whole, without a mask, then the diagonal's, masked
    assert forward.count('loop "loop(carry=2)"') == 1 and forward.count('loop "loop(carry=3)"') == 2
    assert "[parallel=bh]" in forward
    assert '"first_kv_tile(32,16,inf,0):' in forward and '"end_kv_tile(32,16,inf,0):' in forward
    assert '"end_full_kv_tile(32,16,inf,0):' in forward
    # backward: key tiles around query tiles, both carrying (dq, dk, dv)
    assert backward.count('loop "loop(carry=3)"') == 2 and "loop(carry=2)" not in backward
    assert '"first_q_tile(32,16,inf,0):' in backward
    assert str(tlir.parse_text(out)) == out.rstrip("\n")


def test_compile_ir_with_shapes() -> None:
    out = ok("compile", FLASH_JSON, *SHAPES)
    assert (
        '%flash_attn_output, %flash_attn_output.lse = custom_vjp "custom_vjp" '
        "(%flash_q_transposed, %flash_k_transposed, %flash_v_transposed) : [1,4,64,16], [1,4,64] {"
    ) in out
    assert "(%flash_transposed_back) : [1,64,64]" in out


def test_compile_print_after_all_changes_diff_and_timing() -> None:
    after_all = ok("compile", FLASH_TEXT, "--print-after-all", "--timing")
    assert "// ----- IR after tile-flash -----" in after_all
    assert "// ----- IR after dead-code (unchanged) -----" in after_all
    assert "// ----- emit ir -----" in after_all
    assert re.search(
        r"// ----- pass timing -----\npass +ms +share +changed\ntile-flash ", after_all
    )
    changes = ok("compile", FLASH_TEXT, "--print-changes", "--emit", "python")
    assert "IR after tile-flash" in changes and "IR after dead-code" not in changes
    diff = ok("compile", FLASH_TEXT, "--print-diff")
    assert "--- before tile-flash\n+++ after tile-flash" in diff
    assert re.search(r'^-  %flash_attn_output = flash "flash_', diff, re.MULTILINE)
    assert re.search(
        r'^\+  %flash_attn_output, %flash_attn_output.lse = custom_vjp "custom_vjp"',
        diff,
        re.MULTILINE,
    )


def test_compile_pipeline_names_and_options() -> None:
    untouched = ok("compile", FLASH_TEXT, "--pipeline", "dead-code")
    assert untouched == ok("show", FLASH_TEXT)
    one_loop = ok(
        "compile", FLASH_TEXT, "--pipeline", "tile-flash{block_q=0,block_kv=32},dead-code"
    )
    forward, backward = one_loop.split("} grad {")
    # no query-tile loop: all rows at once, through the unmasked and the masked key-tile loops
    assert forward.count('loop "loop(carry=') == 2 and "parallel" not in forward
    assert backward.count('loop "loop(carry=') == 2
    assert '"tile(k,32):bhkd,->bhkd"' in one_loop and '"tile(q,' not in forward


def test_compile_and_run_default_to_the_jax_backends_platform_pipeline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --pipeline, the CLI runs `backends.jax.default_pipeline()`, as jax.compile does
    (it depends on the platform); with --pipeline, the pipeline given."""
    from backends import jax as jax_backend
    from app.cli import main
    from passes import TileFlash

    platform_default = [TileFlash(block_q=0, block_kv=8), "dead-code"]
    monkeypatch.setattr(
        jax_backend, "default_pipeline", lambda platform=None, graph=None: platform_default
    )
    assert main(["compile", str(FLASH_JSON), "--explain", *SHAPES]) == 0
    out = capsys.readouterr().out
    assert "forward: key-tile loops (Bc=8) over all query rows at once" in out
    assert "after the pipeline (tile-flash{block_q=0,block_kv=8},dead-code)" in out
    assert main(["compile", str(FLASH_JSON), "--pipeline", "tile-flash", "--explain"]) == 0
    assert "a query-tile loop (Bq=32) around key-tile loops (Bc=16)" in capsys.readouterr().out
    assert main(["compile", str(FLASH_JSON)]) == 0
    assert '"tile(k,8):bhkd,->bhkd"' in capsys.readouterr().out
    assert main(["run", str(FLASH_JSON), *SHAPES, "--seed", "3"]) == 0
    default_run = _checksums(capsys.readouterr().out)
    assert main(["run", str(FLASH_JSON), *SHAPES, "--seed", "3", "--backend", "numpy"]) == 0
    np.testing.assert_allclose(default_run, _checksums(capsys.readouterr().out), rtol=1e-4)


def test_compile_emit_jaxpr_and_hlo_show_the_loop() -> None:
    jaxpr = ok("compile", FLASH_JSON, "--emit", "jaxpr", *SHAPES)
    assert re.search(r"\b(scan|while)\[", jaxpr)
    assert "f32[1,64,64]" in jaxpr
    bf16 = ok("compile", FLASH_JSON, "--emit", "jaxpr", "--dtype", "bfloat16", *SHAPES)
    assert "bf16[1,64,64]" in bf16
    hlo = ok("compile", FLASH_JSON, "--emit", "hlo", *SHAPES)
    assert "while" in hlo


def test_compile_emit_python_is_faithful() -> None:
    source = ok("compile", FLASH_JSON, "--emit", "python", *TAIL_SHAPES)
    assert "lax.fori_loop(" in source and "def step_" in source
    assert re.search(r'= jnp\.einsum\("bhqd,bhkd->bhqk", q_tile, k_tile, ', source)
    namespace: dict[str, object] = {}
    exec(compile(source, "<emitted>", "exec"), namespace)  # noqa: S102 (our own output)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1, 50, 64), dtype=np.float32) for _ in range(3)]
    (result,) = namespace["graph"](*inputs)  # type: ignore[operator]
    (reference,) = numpy_backend.run(flash_graph(), *inputs)
    np.testing.assert_allclose(np.asarray(result), reference, atol=2e-5)


def test_compile_explain_rewritten_node() -> None:
    out = ok("compile", FLASH_JSON, "--explain", "--pipeline", "tile-flash,dead-code", *SHAPES)
    assert "node 6 flash 'flash_bhqd,bhkd,bhkv->bhqv_32_16_causal' -> %flash_attn_output" in out
    assert "fields: q=bhqd k=bhkd v=bhkv out=bhqv Bq=32 Bc=16 causal=yes" in out
    assert "rewritten by tile-flash into one custom_vjp node: its body is the tiled forward" in out
    assert (
        "forward: a query-tile loop (Bq=32) around key-tile loops (Bc=16), carrying "
        "(acc, max, sum) in float32" in out
    )
    assert (
        "block skipping: the key loop of query tile i runs over first_kv_tile..end_kv_tile" in out
    )
    assert "backward (grad body): a key-tile loop (Bc=16) around a query-tile loop (Bq=32)" in out
    assert "dropout p=" not in out
    assert "Sq=64: 2 query tile(s); Skv=64: 4 key tile(s)" in out
    assert "the forward visits 6 of 8 (query tile, key tile) pair(s)" in out  # causal skipping
    assert "not matched (not flash nodes): 4 einsum, 4 reshape" in out
    assert (
        "after the pipeline (tile-flash,dead-code): 1 flash node(s) before, 0 left; "
        "1 custom_vjp node(s), 5 loop node(s)" in out
    )
    assert "key tiles that every query row sees whole run in a loop without a mask" in out
    assert "the query-tile loop is parallel=bh: its iterations are independent" in out
    assert "graph(" not in out  # --explain alone emits no IR


def test_compile_explain_dropout_and_non_flash_graphs(tmp_path: Path) -> None:
    dropout = tmp_path / "dropout.tlir"
    dropout.write_text(
        "graph(%q, %k, %v, %key) -> (%o) {\n"
        '  %o = flash "flash_bhqd,bhkd,bhkv->bhqv_64_64_dropout0.1" (%q, %k, %v, %key)\n}\n'
    )
    explained = ok("compile", dropout, "--explain")
    assert "block skipping: none (every query tile sees every key tile)" in explained
    assert re.search(
        r"^  dropout p=0\.1: %key \(a PRNG key: jax\.random\.key or raw uint32\[2\]\) seeds one "
        r"keep mask per \(query tile, key tile\), dropout_keep\(key, i, j\);",
        explained,
        re.MULTILINE,
    )
    assert "the backward redraws the same masks, and the key gets no cotangent" in explained
    skipped = ok("compile", dropout, "--explain", "--pipeline", "dead-code")
    assert "not rewritten: the pipeline (dead-code) does not run tile-flash" in skipped
    unfused = ok("compile", MHA_RUST, "--explain")
    assert "no flash node: tile-flash rewrites only flash nodes" in unfused
    assert "node 8 'softmax_k' is a softmax of unfused attention" in unfused


@pytest.mark.parametrize(
    "seq, parts",
    [
        (
            50,
            [
                "the padded tail of the keys; the padded tail of the queries\n",
                "  Sq=50: 2 query tile(s); Skv=50: 4 key tile(s) (K, V padded 50 -> 64, the tail",
                "  the forward visits 6 of 8 (query tile, key tile) pair(s)\n",
            ],
        ),
        (
            12,
            [
                "  masks: causal (keys after the diagonal are masked)\n",
                "  Sq=12: 1 query tile(s) (one of 12 rows: Bq=32 is longer); Skv=12: 1 key tile(s)",
                "(one of 12 keys: Bc=16 is longer)\n",
                "  the forward visits 1 of 1 (query tile, key tile) pair(s)\n",
            ],
        ),
    ],
    ids=["seq=50-padded-tails", "seq=12-tiles-cut-to-the-sequence"],
)
def test_explain_trip_counts_follow_the_tile_sizes(seq: int, parts: list[str]) -> None:
    from app.explain import explain
    from passes import TileFlash

    graph = flash_graph()
    shapes = tlir.infer_shapes(graph, {name: (1, seq, 64) for name in ("Q", "K", "V")})
    text = explain(graph, [TileFlash()], shapes) + "\n"
    for part in parts:
        assert part in text


def test_explain_reports_a_refusal_in_the_pass_words(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.explain import explain
    from passes import FlashToLoop, TileFlash

    def refuse(self: FlashToLoop, node: tlir.EinsumNode, graph: tlir.EinsumGraph) -> None:
        raise tlir.PassError("tile-flash cannot tile this node")

    monkeypatch.setattr(FlashToLoop, "match", refuse)
    text = explain(flash_graph(), [TileFlash()])
    assert "  refused by tile-flash: tile-flash cannot tile this node" in text.splitlines()


# ---------------------------------------------------------------------------------------- run


def _checksums(out: str) -> tuple[float, float]:
    match = re.search(
        rf"^flash_output: shape 1x64x64 dtype \w+ sum=({NUMBER}) mean\|x\|=({NUMBER})$",
        out,
        re.MULTILINE,
    )
    assert match, out
    return float(match.group(1)), float(match.group(2))


def test_run_jax_and_numpy_agree() -> None:
    jax_out = ok("run", FLASH_JSON, *SHAPES, "--seed", "3")
    assert "dtype float32" in jax_out
    assert re.search(
        r"^wall time: \d+\.\d ms first call .*, \d+\.\d ms second call", jax_out, re.MULTILINE
    )
    numpy_out = ok("run", FLASH_JSON, *SHAPES, "--seed", "3", "--backend", "numpy")
    assert "dtype float64" in numpy_out
    np.testing.assert_allclose(_checksums(jax_out), _checksums(numpy_out), rtol=1e-4)
    other_seed = ok("run", FLASH_JSON, *SHAPES, "--seed", "4", "--backend", "numpy")
    assert _checksums(other_seed) != _checksums(numpy_out)


def test_run_dropout_graph_makes_the_key_from_the_seed(tmp_path: Path) -> None:
    dropout = dropout_file(tmp_path)
    out = ok("run", dropout, *SHAPES, "--seed", "3")  # no --shape for flash_dropout_key
    assert "dtype float32" in out
    again = ok("run", dropout, *SHAPES, "--seed", "3")
    assert _checksums(again) == _checksums(out)  # the same key: the same masks
    assert _checksums(ok("run", dropout, *SHAPES, "--seed", "4")) != _checksums(out)
    no_dropout = ok("run", FLASH_JSON, *SHAPES, "--seed", "3")  # the same Q, K, V
    assert _checksums(no_dropout) != _checksums(out)
    bf16 = ok("run", dropout, *SHAPES, "--dtype", "bfloat16")  # the key stays a key
    assert "dtype bfloat16" in bf16
    tiled = ok("run", dropout, *SHAPES, "--backend", "numpy", "--pipeline", "tile-flash")
    assert "dtype float64" in tiled  # the key is raw uint32[2] data; numpy draws its own masks
    jaxpr = ok("compile", dropout, "--emit", "jaxpr", *SHAPES)
    assert "key<fry>[]" in jaxpr


def test_run_low_precision_and_rust_json() -> None:
    bf16 = ok("run", FLASH_TEXT, *SHAPES, "--dtype", "bfloat16")
    assert "dtype bfloat16" in bf16
    unfused = ok("run", MHA_RUST, *SHAPES, "--backend", "numpy", "--dtype", "float16")
    assert re.search(
        rf"^mha_output: shape 1x64x64 dtype float64 sum={NUMBER}", unfused, re.MULTILINE
    )


# ---------------------------------------------------------------------------------------- dot


def test_dot_writes_clusters_for_loop_bodies(tmp_path: Path) -> None:
    out = tmp_path / "flash.dot"
    assert ok("dot", FLASH_JSON, "-o", out, "--after", "tile-flash,dead-code") == f"wrote {out}\n"
    text = out.read_text()
    assert text.startswith('digraph "flash_causal" {')
    # the custom_vjp node's body (a query-tile loop around two key-tile loops) and grad body
    # (two nested loops)
    assert text.count("subgraph cluster_") == 7
    assert 'label="body"' in text and 'label="grad body"' in text
    assert text.count("{") == text.count("}")
    assert 'label="einsum\\nbhqd,bhkd->bhqk\\nacc=float32"' in text
    again = tmp_path / "again.dot"
    ok("dot", FLASH_JSON, "-o", again, "--after", "tile-flash,dead-code")
    assert again.read_text() == text
    before = ok("dot", FLASH_JSON, "-o", "-")
    assert (
        "cluster_" not in before and 'label="flash_bhqd,bhkd,bhkv->bhqv_32_16_causal"' not in before
    )
    assert 'label="flash\\nflash_bhqd,bhkd,bhkv->bhqv_32_16_causal"' in before


def test_dot_svg_calls_graphviz(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text('#!/bin/sh\nfor last; do :; done\necho "fake $1 $2" > "$last"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "flash.svg"
    assert ok("dot", FLASH_JSON, "-o", out, path=str(bin_dir)).startswith("wrote ")
    assert out.read_text() == f"fake -Tsvg {tmp_path / 'flash.dot'}\n"


def test_dot_without_graphviz_writes_dot_and_fails(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    out = tmp_path / "flash.png"
    done = tlir_cli("dot", FLASH_JSON, "-o", out, path=str(empty))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert re.fullmatch(
        r"tlir: error: Graphviz is not installed .*; wrote the DOT form to .*flash\.dot instead\n",
        done.stderr,
    )
    assert (tmp_path / "flash.dot").read_text().startswith("digraph")
    assert not out.exists()


# --------------------------------------------------------------------------------------- demo


def test_demo_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    assert (args.seq, args.d_model, args.heads, args.no_causal, args.batch) == (
        2048,
        512,
        8,
        False,
        1,
    )


def test_demo_small() -> None:
    out = ok("demo", "--seq", "256", "--runs", "2")
    steps = re.findall(r"^\[(\d)/5\] ", out, re.MULTILINE)
    assert steps == ["1", "2", "3", "4", "5"]
    assert "graph(%Q: [1,256,512], %K: [1,256,512], %V: [1,256,512])" in out
    assert "[2/5] running the pass pipeline of backends.jax.compile on cpu" in out
    assert "// ----- IR after tile-flash -----" in out
    assert out.count('custom_vjp "custom_vjp"') == 1 and out.count("} grad {") == 1
    # after dead-code, a summary instead of the same long IR again
    assert re.search(
        r"^// ----- IR after dead-code \(unchanged\) -----\n// 9 top-level node\(s\), \d+ in all "
        r"\(1 custom_vjp, .*5 loop.*\); the same IR as above$",
        out,
        re.MULTILINE,
    )
    assert re.search(
        r"^tiled \(tile-flash\) +\d+\.\d ms +(\d+\.\d MiB|n/a) +\d\.\d\de-\d\d$", out, re.MULTILINE
    )
    assert re.search(r"^naive \(einsum\+softmax\) +\d+\.\d ms ", out, re.MULTILINE)
    assert "ok: both agree with the float64 reference" in out


# ------------------------------------------------------------------------------------- errors


def _bad_inputs(tmp: Path) -> dict[str, Path]:
    dropout_file(tmp)
    files = {
        "bad.json": '{"tensors": [1,',
        "bad.tlir": 'graph(%Q) -> (%R) {\n  %R = einsum "ab->ba" (%Q',
        "badspec.tlir": 'graph(%Q) -> (%R) {\n  %R = einsum "ab->bz" (%Q)\n}\n',
        "badrust.json": '{"tensors": ["a", "b"], "nodes": [{"op": {"Conv": {}}, '
        '"inputs": [0], "outputs": [1]}]}',
        "empty.tlir": "\n",
        "flash.txt": "",
    }
    for name, text in files.items():
        (tmp / name).write_text(text)
    return {name: tmp / name for name in files}


ERRORS = [
    # (id, args with {tmp}/{flash} placeholders, exit status, message regex)
    ("missing-file", ["show", "{tmp}/nope.json"], 1, r"cannot read .*nope\.json: No such file"),
    ("directory", ["show", "{tmp}"], 1, r"cannot read .*: Is a directory"),
    ("empty-file", ["show", "{tmp}/empty.tlir"], 1, r"empty\.tlir: the file is empty"),
    ("bad-json", ["show", "{tmp}/bad.json"], 1, r"bad\.json: not valid JSON: "),
    ("bad-rust-op", ["show", "{tmp}/badrust.json"], 1, r"unknown Rust op 'Conv'; expected Einsum"),
    ("bad-text-ir", ["show", "{tmp}/bad.tlir"], 1, r"bad\.tlir: text IR line 2: expected ','"),
    (
        "bad-spec",
        ["show", "{tmp}/badspec.tlir"],
        1,
        r"text IR line 2: spec 'ab->bz': output label 'z' appears in no input",
    ),
    (
        "shapes-do-not-fit",
        ["run", "{flash}", "--shape", "Q=1x64x64", "--shape", "K=1x64x64", "--shape", "V=1x64x32"],
        1,
        r"the shapes Q=1x64x64, K=1x64x64, V=1x64x32 do not fit the graph: node 6 .*label 'h'",
    ),
    (
        "unknown-pass",
        ["compile", "{flash}", "--pipeline", "tile-flash,nope"],
        2,
        r"unknown pass 'nope'; available passes: dead-code, tile-flash",
    ),
    (
        "unknown-pass-option",
        ["compile", "{flash}", "--pipeline", "tile-flash{block_z=3}"],
        2,
        r"pass tile-flash has no option 'block_z'; its options: block_q, block_kv",
    ),
    (
        "bad-pass-option",
        ["dot", "{flash}", "-o", "{tmp}/x.dot", "--after", "tile-flash{block_kv=0}"],
        2,
        r"--after: tile-flash: block_kv must be an integer >= 1, found 0",
    ),
    (
        "unknown-input",
        ["show", "{flash}", "--shape", "X=1x2"],
        2,
        r"--shape X: the graph has no input 'X'; its inputs: Q, K, V",
    ),
    (
        "malformed-shape",
        ["show", "{flash}", "--shape", "Q=1by2"],
        2,
        r"argument --shape: expected NAME=DIMS such as Q=2x40x64, found 'Q=1by2'",
    ),
    (
        "duplicate-shape",
        ["show", "{flash}", "--shape", "Q=1x2x3", "--shape", "Q=1x2x3"],
        2,
        r"--shape Q is given twice",
    ),
    (
        "run-missing-shapes",
        ["run", "{flash}", "--shape", "Q=1x64x64"],
        2,
        r"missing --shape for input\(s\) K, V",
    ),
    (
        "jaxpr-needs-shapes",
        ["compile", "{flash}", "--emit", "jaxpr"],
        2,
        r"missing --shape for input\(s\) Q, K, V",
    ),
    ("bad-emit", ["compile", "{flash}", "--emit", "llvm"], 2, r"argument --emit: invalid choice"),
    ("bad-dtype", ["run", "{flash}", "--dtype", "int8"], 2, r"argument --dtype: invalid choice"),
    ("unknown-verb", ["frobnicate"], 2, r"argument VERB: invalid choice: 'frobnicate'"),
    ("no-verb", [], 2, r"the following arguments are required: VERB"),
    (
        "python-with-flash-left",
        ["compile", "{flash}", "--pipeline", "dead-code", "--emit", "python"],
        1,
        r"flash node 'flash_bhqd.*' is left: run the 'tile-flash' pass first",
    ),
    (
        "dot-bad-suffix",
        ["dot", "{flash}", "-o", "{tmp}/flash.txt"],
        2,
        r"-o .*flash\.txt: expected a name ending in \.dot, \.svg or \.png",
    ),
    ("demo-bad-seq", ["demo", "--seq", "0"], 2, r"--seq must be >= 1, found 0"),
    (
        "shape-for-a-dropout-key",
        ["run", "{tmp}/flash_dropout.tlir", *SHAPES, "--shape", "flash_dropout_key=2"],
        2,
        r"--shape flash_dropout_key: flash_dropout_key is a PRNG key input .* takes no --shape",
    ),
    (
        "numpy-flash-dropout",
        ["run", "{tmp}/flash_dropout.tlir", *SHAPES, "--backend", "numpy"],
        1,
        (
            r"the numpy backend computes flash nodes directly and has no dropout "
            r"\('flash_.*_dropout0\.1'\); run the tiled graph with --pipeline tile-flash"
        ),
    ),
]


@pytest.mark.parametrize(
    "args, status, message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    _bad_inputs(tmp_path)
    filled = [a.replace("{tmp}", str(tmp_path)).replace("{flash}", str(FLASH_JSON)) for a in args]
    done = tlir_cli(*filled)
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tlir: error: ")
    assert re.search(message, lines[0]), lines[0]
