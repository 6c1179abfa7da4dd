"""What the forward and backward tilings of a flash node share: terms, tiles, bounds, masks.

Legend: b batch, h query heads, g kv heads, r query heads per kv head, q/k positions, d head dim,
v value dim. With grouped-query attention the loops see q as [b,g,r,q,d], so K and V are never
repeated; otherwise as [b,h,q,d].
"""

from __future__ import annotations

from dataclasses import dataclass

from passes.rewrite import NodeBuilder
from tlir import FlashSpec

F32 = (("acc", "float32"),)


@dataclass(frozen=True)
class Terms:
    """The einsum terms of the loops, with or without the grouped-query split of h into g, r."""

    q: str
    k: str
    v: str
    scores: str
    row: str
    acc: str
    grouped: bool

    @classmethod
    def of(cls, spec: FlashSpec) -> Terms:
        heads = "bgr" if spec.grouped else "bh"
        kv = "bg" if spec.grouped else "bh"
        return cls(
            q=f"{heads}qd",
            k=f"{kv}kd",
            v=f"{kv}kv",
            scores=f"{heads}qk",
            row=f"{heads}q",
            acc=f"{heads}qv",
            grouped=spec.grouped,
        )

    def rows_of(self, build: NodeBuilder, tensor: int, term: str, k: int, name: str) -> int:
        """`tensor` (labelled `term` over h) regrouped over g, r; unchanged without GQA."""
        if not self.grouped:
            return tensor
        grouped = term.replace("h", "gr")
        return build.node(f"reshape:{term},bgkd->{grouped}", [tensor, k], name)

    def heads_of(self, build: NodeBuilder, tensor: int, term: str, name: str) -> int:
        """The inverse of `rows_of`: g, r merged back into h."""
        if not self.grouped:
            return tensor
        return build.node(f"reshape:{term}->{term.replace('gr', 'h')}", [tensor], name)


def bound(value: int | None) -> str:
    return "inf" if value is None else str(value)


def window_args(spec: FlashSpec, block_q: int, tile: int) -> str:
    left, right = spec.visible_window()
    return f"{block_q},{tile},{bound(left)},{bound(right)}"


def dropout_scale(spec: FlashSpec) -> float:
    """Inverted dropout: kept probabilities are scaled by 1/(1-p) (0 when everything drops)."""
    return 0.0 if spec.dropout >= 1 else 1.0 / (1.0 - spec.dropout)


def masked_scores(
    build: NodeBuilder,
    spec: FlashSpec,
    t: Terms,
    tiles: tuple[int, int],
    whole: tuple[int, int],
    index: tuple[int, int],
    scale: int,
    block_q: int,
    tile: int,
) -> int:
    """Scores of one (query tile, key tile) pair, scaled, -inf where the key is not visible."""
    scaled = scaled_scores(build, t, tiles, scale)
    visible = build.node(
        f"attn_mask({window_args(spec, block_q, tile)}):{t.q},{t.k},,->qk",
        [*whole, *index],
        "visible",
    )
    neg_inf = build.node("const(-inf):->", [], "neg_inf")
    sc = t.scores
    return build.node(f"select:qk,{sc},->{sc}", [visible, scaled, neg_inf], "masked")


def scaled_scores(build: NodeBuilder, t: Terms, tiles: tuple[int, int], scale: int) -> int:
    """Scores of one (query tile, key tile) pair, scaled by 1/sqrt(d), accumulated in float32."""
    scores = build.node(f"{t.q},{t.k}->{t.scores}", list(tiles), "scores", attrs=F32)
    return build.node(f"mul:{t.scores},->{t.scores}", [scores, scale], "scaled")


def apply_dropout(
    build: NodeBuilder, spec: FlashSpec, t: Terms, x: int, keep: int, name: str
) -> int:
    """x where kept, scaled by 1/(1-p); 0 where dropped."""
    sc = t.scores
    boosted = build.node(f"scale({dropout_scale(spec)!r}):{sc}->{sc}", [x], f"{name}_boosted")
    zero = build.node("const(0):->", [], "zero")
    return build.node(f"select:{sc},{sc},->{sc}", [keep, boosted, zero], name)


def named_inputs(build: NodeBuilder, names: list[str]) -> dict[str, int]:
    """A body's input tensors by name, created in the order of the loop's operands."""
    return {name: build.tensor(name) for name in names}


def prologue(build: NodeBuilder, t: Terms, q: int, k: int, v: int, tile: int) -> tuple[int, ...]:
    """(scale, K padded, V padded): 1/sqrt(d), and K, V padded with zeros to whole key tiles."""
    scale = build.node("rsqrt_size(d):bhqd->", [q], "scale")
    k_padded = build.node(f"pad_tiles(k,{tile}):{t.k}->{t.k}", [k], "k_padded")
    v_padded = build.node(f"pad_tiles(k,{tile}):{t.v}->{t.v}", [v], "v_padded")
    return scale, k_padded, v_padded


def kv_tiles(
    build: NodeBuilder, t: Terms, tile: int, k_padded: int, v_padded: int, j: int
) -> tuple[int, int]:
    """Key tile j of K and V."""
    k_tile = build.node(f"tile(k,{tile}):{t.k},->{t.k}", [k_padded, j], "k_tile")
    v_tile = build.node(f"tile(k,{tile}):{t.v},->{t.v}", [v_padded, j], "v_tile")
    return k_tile, v_tile


def visible_tiles(
    build: NodeBuilder,
    spec: FlashSpec,
    t: Terms,
    axis: str,
    tiles: tuple[int, int],
    operands: tuple[int, int, int],
) -> tuple[int, int]:
    """(lo, hi): the `axis` ("kv" or "q") tiles that the other axis's tile can see."""
    block_q, tile = tiles
    bounds = f"({window_args(spec, block_q, tile)}):{t.q},{t.k},->"
    lo = build.node(f"first_{axis}_tile{bounds}", list(operands), "lo")
    hi = build.node(f"end_{axis}_tile{bounds}", list(operands), "hi")
    return lo, hi


def whole_tiles(
    build: NodeBuilder,
    spec: FlashSpec,
    t: Terms,
    tiles: tuple[int, int],
    operands: tuple[int, int, int],
    first_visible: int,
) -> tuple[int, int]:
    """(lo, hi): the key tiles that every row of the query tile sees whole, so need no mask.
    Without a window's left edge that run starts at the first visible tile."""
    block_q, tile = tiles
    bounds = f"({window_args(spec, block_q, tile)}):{t.q},{t.k},->"
    lo = first_visible
    if spec.visible_window()[0] is not None:
        lo = build.node(f"first_full_kv_tile{bounds}", list(operands), "whole_lo")
    hi = build.node(f"end_full_kv_tile{bounds}", list(operands), "whole_hi")
    return lo, hi


def dropout_keep(
    build: NodeBuilder, spec: FlashSpec, t: Terms, key: int, tiles: tuple[int, int], i: int, j: int
) -> int:
    """The keep mask of tile (i, j): the forward and the backward draw the same one."""
    q_tile, k_tile = tiles
    return build.node(
        f"dropout_keep({spec.dropout!r}):,{t.q},{t.k},,->{t.scores}",
        [key, q_tile, k_tile, i, j],
        "keep",
    )
