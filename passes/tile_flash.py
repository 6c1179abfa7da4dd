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


def _loop_body(spec: FlashSpec, terms: _Terms, tile: int) -> EinsumGraph:
    """One step: scores of key tile j, masking, and the online-softmax update of the carry."""
    body = NodeBuilder(0, "")
    j, q, k, k_padded, v_padded, scale, acc, row_max, row_sum = (
        body.tensor(name)
        for name in ("j", "q", "k", "k_padded", "v_padded", "scale", "acc", "max", "sum")
    )
    t, row, sc = terms, terms.row, terms.scores
    k_tile = body.node(f"tile(k,{tile}):{t.k},->{t.k}", [k_padded, j], "k_tile")
    v_tile = body.node(f"tile(k,{tile}):{t.v},->{t.v}", [v_padded, j], "v_tile")
    scores = body.node(f"{t.q},{t.k}->{sc}", [q, k_tile], "scores", attrs=F32)
    scaled = body.node(f"mul:{sc},->{sc}", [scores, scale], "scaled")
    left, right = spec.visible_window()
    visible = body.node(
        f"attn_mask({tile},{_bound(left)},{_bound(right)}):{t.q},{t.k},->qk",
        [q, k, j],
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
        inputs=[j, q, k, k_padded, v_padded, scale, acc, row_max, row_sum],
        outputs=[new_acc, new_max, new_sum],
    )


def tile_flash_node(node: EinsumNode, graph: EinsumGraph, block_kv: int | None) -> Replacement:
    """The tiled-loop replacement of one flash node (see the module docstring)."""
    spec = node.parsed
    assert isinstance(spec, FlashSpec)
    tile = block_kv or spec.block_kv
    terms = _Terms.of(spec.grouped)
    q, k, v = node.inputs[:3]
    out = node.outputs[0]
    build = NodeBuilder(len(graph.tensors), graph.tensors[out], graph.tensors)
    if spec.grouped:
        q_rows = build.node(f"reshape:bhqd,bgkd->{terms.q}", [q, k], "q_grouped")
    else:
        q_rows = q
    scale = build.node("rsqrt_size(d):bhqd->", [q], "scale")
    k_padded = build.node(f"pad_tiles(k,{tile}):{terms.k}->{terms.k}", [k], "k_padded")
    v_padded = build.node(f"pad_tiles(k,{tile}):{terms.v}->{terms.v}", [v], "v_padded")
    lo = build.node("iconst(0):->", [], "lo")
    hi = build.node(f"num_tiles(k,{tile}):{terms.k}->", [k], "hi")
    acc0 = build.node(f"full(0):{terms.q},{terms.v}->{terms.acc}", [q_rows, v], "acc0")
    max0 = build.node(f"full(-inf):{terms.q}->{terms.row}", [q_rows], "max0")
    sum0 = build.node(f"full(0):{terms.q}->{terms.row}", [q_rows], "sum0")
    carried = [build.tensor("acc"), build.tensor("max"), build.tensor("sum")]
    build.node(
        "loop(carry=3)",
        [lo, hi, q_rows, k, k_padded, v_padded, scale, acc0, max0, sum0],
        outputs=carried,
        body=_loop_body(spec, terms, tile),
    )
    acc, row_max, row_sum = carried
    normalized = build.node(
        f"safe_div:{terms.acc},{terms.row}->{terms.acc}", [acc, row_sum], "normalized"
    )
    if spec.grouped:
        normalized = build.node(f"reshape:{terms.acc}->bhqv", [normalized], "ungrouped")
    build.node("cast_like:bhqv,bhqd->bhqv", [normalized, q], outputs=[out])
    if spec.lse:
        lse = node.outputs[1]
        log_sum = build.node(f"log:{terms.row}->{terms.row}", [row_sum], "log_sum")
        add = f"add:{terms.row},{terms.row}->{terms.row}"
        if spec.grouped:
            lse_rows = build.node(add, [row_max, log_sum], "lse_grouped")
            build.node(f"reshape:{terms.row}->bhq", [lse_rows], outputs=[lse])
        else:
            build.node(add, [row_max, log_sum], outputs=[lse])
    return build.replacement()


@dataclass(frozen=True)
class FlashToLoop:
    """Pattern: a flash node -> its tiled loop."""

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
        return tile_flash_node(node, graph, self.block_kv)


@dataclass(frozen=True)
class TileFlash:
    """Rewrite every flash node into an explicit tiled loop; `block_kv` overrides Bc."""

    block_kv: int | None = None
    name: ClassVar[str] = "tile-flash"

    def __post_init__(self) -> None:
        if self.block_kv is not None and (not isinstance(self.block_kv, int) or self.block_kv < 1):
            raise PassError(f"tile-flash: block_kv must be a positive integer, found {self.block_kv!r}")

    def run(self, graph: EinsumGraph) -> EinsumGraph:
        return apply_patterns(graph, [FlashToLoop(self.block_kv)])
