"""tile-flash: every flash node becomes an explicit tiled loop with online softmax.

Per flash node `flash_<q>,<k>,<v>-><out>_<Bq>_<Bc>[flags]` the pass writes (legend: b batch,
h query heads, g kv heads, r query heads per kv head, q/k positions, d head dim, v value dim):

    scale = 1/sqrt(d); K, V padded with zeros to a multiple of Bc (tails are masked, never dropped)
    acc, max, sum = 0, -inf, 0                                        # float32, one row per query
    for j in [0, ceil(Skv/Bc)):                                       # FlashAttention-2, Alg. 1
        s    = (q . K_j) * scale, masked to -inf where key j is not visible (causal, window, tail)
        max' = max(max, rowmax(s));  p = exp(s - max'');  alpha = exp(max - max'')
        sum' = alpha*sum + rowsum(p);  acc' = alpha*acc + p . V_j      # max'' = max' or 0 if -inf
    out = acc / sum (0 where sum is 0: a row that sees no key), cast to q's dtype

All query rows of a tile are processed at once; `Bq` stays in the spec for schedules that tile
queries. Grouped-query attention reshapes q to [b,g,r,q,d] so K and V are never repeated.
`block_kv` overrides Bc: worth it when the spec's Bc was chosen for a GPU's SRAM and the graph runs
through XLA, which prefers fewer, larger tiles (see docs/passes.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from passes.rewrite import NodeBuilder, Replacement, apply_patterns
from tlir import EinsumGraph, EinsumNode, FlashSpec, PassError

F32 = (("acc", "float32"),)


@dataclass(frozen=True)
class _Terms:
    """The einsum terms of the loop, with or without the grouped-query split of h into g, r."""

    q: str
    k: str
    v: str
    scores: str
    row: str
    acc: str

    @classmethod
    def of(cls, grouped: bool) -> _Terms:
        heads = "bgr" if grouped else "bh"
        kv = "bg" if grouped else "bh"
        return cls(
            q=f"{heads}qd",
            k=f"{kv}kd",
            v=f"{kv}kv",
            scores=f"{heads}qk",
            row=f"{heads}q",
            acc=f"{heads}qv",
        )


def _bound(value: int | None) -> str:
    return "inf" if value is None else str(value)


def _kv_loop_body(spec: FlashSpec, t: _Terms, block_q: int, tile: int) -> EinsumGraph:
    """One key tile j for one query tile i: scores, mask, online-softmax update of the carry."""
    body = NodeBuilder(0, "")
    names = ("j", "i", "q_tile", "q", "k", "k_padded", "v_padded", "scale", "acc", "max", "sum")
    j, i, q_tile, q, k, k_padded, v_padded, scale, acc, row_max, row_sum = map(body.tensor, names)
    row, sc = t.row, t.scores
    k_tile = body.node(f"tile(k,{tile}):{t.k},->{t.k}", [k_padded, j], "k_tile")
    v_tile = body.node(f"tile(k,{tile}):{t.v},->{t.v}", [v_padded, j], "v_tile")
    scores = body.node(f"{t.q},{t.k}->{sc}", [q_tile, k_tile], "scores", attrs=F32)
    scaled = body.node(f"mul:{sc},->{sc}", [scores, scale], "scaled")
    left, right = spec.visible_window()
    visible = body.node(
        f"attn_mask({block_q},{tile},{_bound(left)},{_bound(right)}):{t.q},{t.k},,->qk",
        [q, k, i, j],
        "visible",
    )
    neg_inf = body.node("const(-inf):->", [], "neg_inf")
    masked = body.node(f"select:qk,{sc},->{sc}", [visible, scaled, neg_inf], "masked")
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
    p_low = body.node(f"cast_like:{sc},{t.v}->{sc}", [p, v_tile], "p_cast")
    pv = body.node(f"{sc},{t.v}->{t.acc}", [p_low, v_tile], "pv", attrs=F32)
    kept_acc = body.node(f"mul:{t.acc},{row}->{t.acc}", [acc, alpha], "kept_acc")
    new_acc = body.node(f"add:{t.acc},{t.acc}->{t.acc}", [kept_acc, pv], "new_acc")
    return body.graph(
        inputs=[j, i, q_tile, q, k, k_padded, v_padded, scale, acc, row_max, row_sum],
        outputs=[new_acc, new_max, new_sum],
    )


@dataclass(frozen=True)
class _Operands:
    """Tensors, in the graph being built, that the attention of one query tile reads."""

    i: int
    q_tile: int
    q: int
    k: int
    k_padded: int
    v_padded: int
    scale: int


def _attend(
    build: NodeBuilder, spec: FlashSpec, t: _Terms, x: _Operands, block_q: int, tile: int
) -> tuple[int, int, int]:
    """The key-tile loop for one query tile; returns (normalized output, running max, sum)."""
    lo = build.node("iconst(0):->", [], "lo")
    hi = build.node(f"num_tiles(k,{tile}):{t.k}->", [x.k], "hi")
    acc0 = build.node(f"full(0):{t.q},{t.v}->{t.acc}", [x.q_tile, x.v_padded], "acc0")
    max0 = build.node(f"full(-inf):{t.q}->{t.row}", [x.q_tile], "max0")
    sum0 = build.node(f"full(0):{t.q}->{t.row}", [x.q_tile], "sum0")
    carried = [build.tensor("acc"), build.tensor("max"), build.tensor("sum")]
    invariants = [x.i, x.q_tile, x.q, x.k, x.k_padded, x.v_padded, x.scale]
    build.node(
        "loop(carry=3)",
        [lo, hi, *invariants, acc0, max0, sum0],
        outputs=carried,
        body=_kv_loop_body(spec, t, block_q, tile),
    )
    acc, row_max, row_sum = carried
    normalized = build.node(f"safe_div:{t.acc},{t.row}->{t.acc}", [acc, row_sum], "normalized")
    return normalized, row_max, row_sum


def _lse(build: NodeBuilder, t: _Terms, row_max: int, row_sum: int) -> int:
    log_sum = build.node(f"log:{t.row}->{t.row}", [row_sum], "log_sum")
    return build.node(f"add:{t.row},{t.row}->{t.row}", [row_max, log_sum], "lse_rows")


def _query_tile_body(spec: FlashSpec, t: _Terms, block_q: int, tile: int) -> EinsumGraph:
    """One query tile i: its key-tile loop, written into the carried output (and lse) buffers."""
    body = NodeBuilder(0, "")
    names = ("i", "q_padded", "q", "k", "k_padded", "v_padded", "scale", "out")
    i, q_padded, q, k, k_padded, v_padded, scale, out = map(body.tensor, names)
    carried_in = [out]
    q_tile = body.node(f"tile(q,{block_q}):{t.q},->{t.q}", [q_padded, i], "q_tile")
    operands = _Operands(i, q_tile, q, k, k_padded, v_padded, scale)
    normalized, row_max, row_sum = _attend(body, spec, t, operands, block_q, tile)
    put = f"put_tile(q,{block_q})"
    new_out = body.node(f"{put}:{t.acc},{t.acc},->{t.acc}", [out, normalized, i], "new_out")
    carried_out = [new_out]
    if spec.lse:
        lse_buffer = body.tensor("lse")
        carried_in.append(lse_buffer)
        lse_tile = _lse(body, t, row_max, row_sum)
        new_lse = body.node(
            f"{put}:{t.row},{t.row},->{t.row}", [lse_buffer, lse_tile, i], "new_lse"
        )
        carried_out.append(new_lse)
    return body.graph(
        inputs=[i, q_padded, q, k, k_padded, v_padded, scale, *carried_in], outputs=carried_out
    )


def tile_flash_node(
    node: EinsumNode, graph: EinsumGraph, block_q: int | None, block_kv: int | None
) -> Replacement:
    """The tiled-loop replacement of one flash node (see the module docstring).

    `block_q` 0 processes all query rows in one pass of the key-tile loop (no query loop).
    """
    spec = node.parsed
    assert isinstance(spec, FlashSpec)
    tile = block_kv or spec.block_kv
    block_q = spec.block_q if block_q is None else block_q
    t = _Terms.of(spec.grouped)
    q, k, v = node.inputs[:3]
    build = NodeBuilder(len(graph.tensors), graph.tensors[node.outputs[0]], graph.tensors)
    q_rows = build.node(f"reshape:bhqd,bgkd->{t.q}", [q, k], "q_grouped") if spec.grouped else q
    scale = build.node("rsqrt_size(d):bhqd->", [q], "scale")
    k_padded = build.node(f"pad_tiles(k,{tile}):{t.k}->{t.k}", [k], "k_padded")
    v_padded = build.node(f"pad_tiles(k,{tile}):{t.v}->{t.v}", [v], "v_padded")
    if block_q == 0:
        first = build.node("iconst(0):->", [], "i")
        operands = _Operands(first, q_rows, q_rows, k, k_padded, v_padded, scale)
        out, row_max, row_sum = _attend(build, spec, t, operands, 0, tile)
        lse = _lse(build, t, row_max, row_sum) if spec.lse else None
    else:
        q_padded = build.node(f"pad_tiles(q,{block_q}):{t.q}->{t.q}", [q_rows], "q_padded")
        buffers = [build.node(f"full(0):{t.q},{t.v}->{t.acc}", [q_padded, v], "out0")]
        if spec.lse:
            buffers.append(build.node(f"full(-inf):{t.q}->{t.row}", [q_padded], "lse0"))
        lo = build.node("iconst(0):->", [], "lo")
        hi = build.node(f"num_tiles(q,{block_q}):{t.q}->", [q_rows], "hi")
        results = [build.tensor("out_padded")] + ([build.tensor("lse_padded")] if spec.lse else [])
        build.node(
            f"loop(carry={len(buffers)})",
            [lo, hi, q_padded, q_rows, k, k_padded, v_padded, scale, *buffers],
            outputs=results,
            body=_query_tile_body(spec, t, block_q, tile),
        )
        out = build.node(f"crop(q):{t.acc},{t.q}->{t.acc}", [results[0], q_rows], "cropped")
        lse = None
        if spec.lse:
            lse = build.node(f"crop(q):{t.row},{t.q}->{t.row}", [results[1], q_rows], "lse_rows")
    _finish(build, node, spec, t, out, lse)
    return build.replacement()


def _finish(
    build: NodeBuilder, node: EinsumNode, spec: FlashSpec, t: _Terms, out: int, lse: int | None
) -> None:
    """Undo the grouped-query split, cast to q's dtype, and write the flash node's results."""
    q = node.inputs[0]
    if spec.grouped:
        out = build.node(f"reshape:{t.acc}->bhqv", [out], "ungrouped")
    build.node("cast_like:bhqv,bhqd->bhqv", [out, q], outputs=[node.outputs[0]])
    if lse is not None:
        lse_spec = f"reshape:{t.row}->bhq" if spec.grouped else "scale(1):bhq->bhq"
        build.node(lse_spec, [lse], outputs=[node.outputs[1]])


@dataclass(frozen=True)
class FlashToLoop:
    """Pattern: a flash node -> its tiled loop."""

    block_q: int | None = None
    block_kv: int | None = None
    name: ClassVar[str] = "flash-to-loop"

    def match(self, node: EinsumNode, graph: EinsumGraph) -> Replacement | None:
        spec = node.parsed
        if not isinstance(spec, FlashSpec):
            return None
        if spec.dropout > 0:
            raise PassError(
                f"tile-flash does not implement dropout yet (spec {spec.text!r}); "
                "it refuses rather than silently ignoring it"
            )
        return tile_flash_node(node, graph, self.block_q, self.block_kv)


@dataclass(frozen=True)
class TileFlash:
    """Rewrite every flash node into explicit tiled loops.

    `block_q` and `block_kv` override the spec's Bq and Bc; `block_q=0` drops the query loop
    and processes all query rows at once (the better schedule on a GPU, where a sequential loop
    over query tiles leaves the device idle).
    """

    block_q: int | None = None
    block_kv: int | None = None
    name: ClassVar[str] = "tile-flash"

    def __post_init__(self) -> None:
        for option, least in (("block_q", 0), ("block_kv", 1)):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, int) or value < least):
                raise PassError(
                    f"tile-flash: {option} must be an integer >= {least}, found {value!r}"
                )

    def run(self, graph: EinsumGraph) -> EinsumGraph:
        return apply_patterns(graph, [FlashToLoop(self.block_q, self.block_kv)])
