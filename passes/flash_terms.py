"""What the forward and backward tilings of a flash node share: terms, bounds and prologue.

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
    q_tile, k_tile = tiles
    scores = build.node(f"{t.q},{t.k}->{t.scores}", [q_tile, k_tile], "scores", attrs=F32)
    scaled = build.node(f"mul:{t.scores},->{t.scores}", [scores, scale], "scaled")
    visible = build.node(
        f"attn_mask({window_args(spec, block_q, tile)}):{t.q},{t.k},,->qk",
        [*whole, *index],
        "visible",
    )
    neg_inf = build.node("const(-inf):->", [], "neg_inf")
    sc = t.scores
    return build.node(f"select:qk,{sc},->{sc}", [visible, scaled, neg_inf], "masked")


def apply_dropout(
    build: NodeBuilder, spec: FlashSpec, t: Terms, x: int, keep: int, name: str
) -> int:
    """x where kept, scaled by 1/(1-p); 0 where dropped."""
    sc = t.scores
    boosted = build.node(f"scale({dropout_scale(spec)!r}):{sc}->{sc}", [x], f"{name}_boosted")
    zero = build.node("const(0):->", [], "zero")
    return build.node(f"select:{sc},{sc},->{sc}", [keep, boosted, zero], name)
