"""tile-flash: every flash node becomes a custom_vjp node of explicit tiled loops.

The forward body (FlashAttention-2, Algorithm 1; legend in passes/flash_terms.py):

    scale = 1/sqrt(d); Q, K, V padded with zeros to whole tiles (tails are masked, never dropped)
    for i over query tiles of Bq rows:                      (Bq = 0: all rows at once, no loop)
        acc, max, sum = 0, -inf, 0                                    # float32, one per row
        for j over the key tiles that tile i can see:                 # block skipping
            s    = (Q_i . K_j) * scale, -inf where not visible (causal, window, tail;
                   only tiles that some row sees in part build a mask)
            max' = max(max, rowmax(s));  p = exp(s - max'')         # max'' = max', or 0 if -inf
            sum' = exp(max - max'') sum + rowsum(p)
            acc' = exp(max - max'') acc + dropout(p) . V_j
        out_i = acc / sum (0 where sum = 0: a row that sees no key);  lse_i = max + log(sum)

The grad body (passes/flash_backward.py) recomputes score tiles from Q, K, V and the saved lse:
only O(N) values are kept between forward and backward. The lse is always computed; it is a
result of the flash node only with the spec's `_lse` flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from passes.flash_backward import backward_graph
from passes.flash_terms import (
    F32,
    Terms,
    apply_dropout,
    dropout_keep,
    kv_tiles,
    masked_scores,
    named_inputs,
    prologue,
    scaled_scores,
    visible_tiles,
    whole_tiles,
)
from passes.rewrite import NodeBuilder, Replacement, apply_patterns
from tlir import EinsumGraph, EinsumNode, FlashSpec, PassError
from tlir.spec import term_text


@dataclass(frozen=True)
class _Tiles:
    """Tensors of the graph being built that one query tile's key loop reads."""

    i: int
    q_tile: int
    q: int
    k: int
    k_padded: int
    v_padded: int
    scale: int
    key: int | None


def _kv_step(spec: FlashSpec, t: Terms, block_q: int, tile: int, masked: bool) -> EinsumGraph:
    """One key tile j for query tile i: the online-softmax update of (acc, max, sum).

    `masked`: the tile may hold keys that some row must not see (the causal diagonal, a
    window's edge, the padded tail); otherwise every score counts and no mask is built.
    """
    body = NodeBuilder(0, "")
    names = ["j", "i", "q_tile", "q", "k", "k_padded", "v_padded", "scale"]
    names += ["key"] if spec.dropout > 0 else []
    x = named_inputs(body, names + ["acc", "max", "sum"])
    j, i, q_tile = x["j"], x["i"], x["q_tile"]
    acc, row_max, row_sum = x["acc"], x["max"], x["sum"]
    row, sc = t.row, t.scores
    k_tile, v_tile = kv_tiles(body, t, tile, x["k_padded"], x["v_padded"], j)
    if masked:
        masked = masked_scores(
            body, spec, t, (q_tile, k_tile), (x["q"], x["k"]), (i, j), x["scale"], block_q, tile
        )
    else:
        masked = scaled_scores(body, t, (q_tile, k_tile), x["scale"])
    tile_max = body.node(f"max:{sc}->{row}", [masked], "tile_max")
    new_max = body.node(f"maximum:{row},{row}->{row}", [row_max, tile_max], "new_max")
    # A row with no visible key so far has max -inf; shift by 0 instead so exp gives 0, not NaN.
    shift = body.node(f"inf_to_zero:{row}->{row}", [new_max], "shift")
    centered = body.node(f"sub:{sc},{row}->{sc}", [masked, shift], "centered")
    p = body.node(f"exp:{sc}->{sc}", [centered], "p")
    max_drop = body.node(f"sub:{row},{row}->{row}", [row_max, shift], "max_drop")
    alpha = body.node(f"exp:{row}->{row}", [max_drop], "alpha")
    p_sum = body.node(f"sum:{sc}->{row}", [p], "p_sum")
    kept_sum = body.node(f"mul:{row},{row}->{row}", [row_sum, alpha], "kept_sum")
    new_sum = body.node(f"add:{row},{row}->{row}", [kept_sum, p_sum], "new_sum")
    if spec.dropout > 0:
        keep = dropout_keep(body, spec, t, x["key"], (q_tile, k_tile), i, j)
        p = apply_dropout(body, spec, t, p, keep, "p_dropped")
    p_low = body.node(f"cast_like:{sc},{t.v}->{sc}", [p, v_tile], "p_cast")
    pv = body.node(f"{sc},{t.v}->{t.acc}", [p_low, v_tile], "pv", attrs=F32)
    kept_acc = body.node(f"mul:{t.acc},{row}->{t.acc}", [acc, alpha], "kept_acc")
    new_acc = body.node(f"add:{t.acc},{t.acc}->{t.acc}", [kept_acc, pv], "new_acc")
    return body.graph(inputs=list(x.values()), outputs=[new_acc, new_max, new_sum])


def _attend(
    build: NodeBuilder, spec: FlashSpec, t: Terms, x: _Tiles, block_q: int, tile: int
) -> tuple[int, int]:
    """The key-tile loops of one query tile; returns its (output, lse) rows, float32.

    The visible key tiles split in three runs, as in FlashAttention-2: those a window's left
    edge cuts (masked), those every row sees whole (no mask at all), and those the diagonal or
    the padded tail cuts (masked). Without a left edge the first run is empty and left out.
    """
    lo, hi = visible_tiles(build, spec, t, "kv", (block_q, tile), (x.q, x.k, x.i))
    whole_lo, whole_hi = whole_tiles(build, spec, t, (block_q, tile), (x.q, x.k, x.i), lo)
    runs = [(lo, whole_lo, True), (whole_lo, whole_hi, False), (whole_hi, hi, True)]
    if whole_lo == lo:
        runs = runs[1:]
    carried = [
        build.node(f"full(0):{t.q},{t.v}->{t.acc}", [x.q_tile, x.v_padded], "acc0"),
        build.node(f"full(-inf):{t.q}->{t.row}", [x.q_tile], "max0"),
        build.node(f"full(0):{t.q}->{t.row}", [x.q_tile], "sum0"),
    ]
    invariants = [x.i, x.q_tile, x.q, x.k, x.k_padded, x.v_padded, x.scale]
    invariants += [x.key] if x.key is not None else []
    for start, stop, masked in runs:
        suffix = "_edge" if masked else "_whole"
        results = [build.tensor(name + suffix) for name in ("acc", "max", "sum")]
        build.node(
            "loop(carry=3)",
            [start, stop, *invariants, *carried],
            outputs=results,
            body=_kv_step(spec, t, block_q, tile, masked),
        )
        carried = results
    acc, row_max, row_sum = carried
    out = build.node(f"safe_div:{t.acc},{t.row}->{t.acc}", [acc, row_sum], "normalized")
    log_sum = build.node(f"log:{t.row}->{t.row}", [row_sum], "log_sum")
    lse = build.node(f"add:{t.row},{t.row}->{t.row}", [row_max, log_sum], "lse_rows")
    return out, lse


def _query_tile_step(spec: FlashSpec, t: Terms, block_q: int, tile: int) -> EinsumGraph:
    """One query tile i: its key loop, written into the carried output and lse buffers."""
    body = NodeBuilder(0, "")
    names = ["i", "q_padded", "q", "k", "k_padded", "v_padded", "scale"]
    names += ["key"] if spec.dropout > 0 else []
    x = named_inputs(body, names + ["out", "lse"])
    i, out_buffer, lse_buffer = x["i"], x["out"], x["lse"]
    q_tile = body.node(f"tile(q,{block_q}):{t.q},->{t.q}", [x["q_padded"], i], "q_tile")
    tiles = _Tiles(
        i, q_tile, x["q"], x["k"], x["k_padded"], x["v_padded"], x["scale"], x.get("key")
    )
    out, lse = _attend(body, spec, t, tiles, block_q, tile)
    put = f"put_tile(q,{block_q})"
    new_out = body.node(f"{put}:{t.acc},{t.acc},->{t.acc}", [out_buffer, out, i], "new_out")
    new_lse = body.node(f"{put}:{t.row},{t.row},->{t.row}", [lse_buffer, lse, i], "new_lse")
    return body.graph(inputs=list(x.values()), outputs=[new_out, new_lse])


def forward_graph(spec: FlashSpec, block_q: int, tile: int) -> EinsumGraph:
    """(q, k, v[, key]) -> (out [b,h,q,v] in q's dtype, lse [b,h,q] float32)."""
    build = NodeBuilder(0, "")
    q, k, v = build.tensor("q"), build.tensor("k"), build.tensor("v")
    key = build.tensor("key") if spec.dropout > 0 else None
    t = Terms.of(spec)
    q_rows = t.rows_of(build, q, "bhqd", k, "q_grouped")
    scale, k_padded, v_padded = prologue(build, t, q, k, v, tile)
    if block_q == 0:
        first = build.node("iconst(0):->", [], "i")
        tiles = _Tiles(first, q_rows, q_rows, k, k_padded, v_padded, scale, key)
        out, lse = _attend(build, spec, t, tiles, 0, tile)
    else:
        q_padded = build.node(f"pad_tiles(q,{block_q}):{t.q}->{t.q}", [q_rows], "q_padded")
        out0 = build.node(f"full(0):{t.q},{t.v}->{t.acc}", [q_padded, v_padded], "out0")
        lse0 = build.node(f"full(-inf):{t.q}->{t.row}", [q_padded], "lse0")
        lo = build.node("iconst(0):->", [], "lo")
        hi = build.node(f"num_tiles(q,{block_q}):{t.q}->", [q_rows], "hi")
        results = [build.tensor("out_padded"), build.tensor("lse_padded")]
        invariants = [q_padded, q_rows, k, k_padded, v_padded, scale]
        invariants += [key] if key is not None else []
        # Query tiles are independent, and so is every (batch, head): a backend may run them
        # side by side, as one kernel's grid (backends/kernel.py).
        batch_labels = t.q.replace("qd", "")
        build.node(
            "loop(carry=2)",
            [lo, hi, *invariants, out0, lse0],
            outputs=results,
            body=_query_tile_step(spec, t, block_q, tile),
            attrs=(("parallel", batch_labels),),
        )
        out = build.node(f"crop(q):{t.acc},{t.q}->{t.acc}", [results[0], q_rows], "out_rows")
        lse = build.node(f"crop(q):{t.row},{t.q}->{t.row}", [results[1], q_rows], "lse_rows")
    out = t.heads_of(build, out, t.acc, "out_heads")
    out = build.node("cast_like:bhqv,bhqd->bhqv", [out, q], "out")
    lse = t.heads_of(build, lse, t.row, "lse")
    inputs = [q, k, v] + ([key] if key is not None else [])
    return build.graph(inputs=inputs, outputs=[out, lse])


def tile_flash_node(node: EinsumNode, graph: EinsumGraph, tiles: TileFlash) -> Replacement:
    """One custom_vjp node: the tiled forward loops and, as its derivative, the backward ones."""
    spec = node.parsed
    assert isinstance(spec, FlashSpec)
    block_q = spec.block_q if tiles.block_q is None else tiles.block_q
    tile = tiles.block_kv or spec.block_kv
    bwd_block_q = block_q if tiles.bwd_block_q is None else tiles.bwd_block_q
    bwd_tile = tiles.bwd_block_kv or tile
    if spec.dropout > 0 and (bwd_block_q, bwd_tile) != (block_q, tile):
        raise PassError(
            f"tile-flash: {spec.text!r} has dropout, whose masks are drawn per tile, so its "
            f"backward must use the forward's tiles {block_q}x{tile}; found backward tiles "
            f"{bwd_block_q}x{bwd_tile} (leave bwd_block_q and bwd_block_kv unset)"
        )
    build = NodeBuilder(len(graph.tensors), graph.tensors[node.outputs[0]], graph.tensors)
    # The loops compute in the legend's layout; other layouts are transposed in and out.
    operands = list(node.inputs)
    for position, name in enumerate(("q", "k", "v")):
        operands[position] = _transposed(build, spec, name, operands[position], to_canonical=True)
    out, lse = node.outputs[0], node.outputs[1] if spec.lse else build.tensor("lse")
    results = [out, lse]
    if not spec.canonical_layout:
        results = [build.tensor("out_canonical"), build.tensor("lse_canonical")]
    build.node(
        "custom_vjp",
        operands,
        outputs=results,
        body=forward_graph(spec, block_q, tile),
        grad_body=backward_graph(spec, bwd_block_q, bwd_tile),
    )
    if not spec.canonical_layout:
        build.node(_transpose_spec(spec, "out", to_canonical=False), [results[0]], outputs=[out])
        build.node(_transpose_spec(spec, "lse", to_canonical=False), [results[1]], outputs=[lse])
    return build.replacement()


def _transpose_spec(spec: FlashSpec, name: str, to_canonical: bool) -> str:
    written, canonical = term_text(spec.term(name)), term_text(spec.roles.canonical(name))
    return f"{written}->{canonical}" if to_canonical else f"{canonical}->{written}"


def _transposed(
    build: NodeBuilder, spec: FlashSpec, name: str, tensor: int, to_canonical: bool
) -> int:
    """`tensor` (term `name` of the spec) in the legend's layout; itself when it is already."""
    if spec.term(name) == spec.roles.canonical(name):
        return tensor
    return build.node(_transpose_spec(spec, name, to_canonical), [tensor], f"{name}_canonical")


@dataclass(frozen=True)
class FlashToLoop:
    """Pattern: a flash node -> its tiled loops."""

    tiles: TileFlash
    name: ClassVar[str] = "flash-to-loop"

    def match(self, node: EinsumNode, graph: EinsumGraph) -> Replacement | None:
        if not isinstance(node.parsed, FlashSpec):
            return None
        return tile_flash_node(node, graph, self.tiles)


@dataclass(frozen=True)
class TileFlash:
    """Rewrite every flash node into explicit tiled loops.

    `block_q` and `block_kv` override the spec's Bq and Bc; `block_q=0` drops the query loop
    and processes all query rows at once (no causal block skipping then, but no sequential
    steps either). `bwd_block_q` and `bwd_block_kv` tile the backward loops (default: the
    forward's tiles): a forward that runs as a GPU kernel wants small tiles, a backward of XLA
    loops large ones. backends.jax.default_pipeline() picks tiles per platform.
    """

    block_q: int | None = None
    block_kv: int | None = None
    bwd_block_q: int | None = None
    bwd_block_kv: int | None = None
    name: ClassVar[str] = "tile-flash"

    def __post_init__(self) -> None:
        for option, least in (
            ("block_q", 0),
            ("block_kv", 1),
            ("bwd_block_q", 0),
            ("bwd_block_kv", 1),
        ):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, int) or value < least):
                raise PassError(
                    f"tile-flash: {option} must be an integer >= {least}, found {value!r}"
                )

    def run(self, graph: EinsumGraph) -> EinsumGraph:
        return apply_patterns(graph, [FlashToLoop(self)])
