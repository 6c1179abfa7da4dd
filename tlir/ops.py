"""The registry of elementwise and reduce operations.

An op spec is written einsum-style: `name(args):terms->term`, for example `sub:bhqk,bhq->bhqk`
(subtract a per-row value from every score: the missing `k` in the second operand broadcasts) or
`max:bhqk->bhq` (reduce over `k`, the label that the output drops). Labels are local to one node,
as in einsum; a label has one size across the node's operands unless the op says otherwise
(`tile` gives its tiled label the tile size in the output).

The seed's unlabelled forms are accepted too: `softmax_k` (softmax over the last axis),
`div_scalar_<c>` (divide by c; its second operand is a placeholder that is never read), a bare
name such as `exp` from `EinsumNode.elem_unary`, and `sum(1,2)` from `EinsumNode.reduce`
(positional arguments are the reduced axes). Unlabelled binary ops broadcast like numpy.

Tile sizes (`tile`, `pad_tiles`, `num_tiles`, `attn_mask`, the tile-range ops) are never larger
than the axis they tile: a size B on an axis of extent n < B means a single tile of n (and 0 means
the whole axis), so short sequences are never padded up to a long tile.

Backends implement every name listed here; `tests/backends` checks that none is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlir.errors import SpecError


@dataclass(frozen=True)
class OpDef:
    """One operation: its kind, operand count and parameter names."""

    name: str
    kind: str  # "elementwise" or "reduce"
    arity: int  # -1: any number of operands (shape donors); operands are counted from 0
    params: tuple[str, ...] = ()
    doc: str = ""
    # Operands whose values are never read, only their shapes or dtype (EVERY_OPERAND: all).
    shape_only: tuple[int, ...] = ()

    def reads_value(self, position: int) -> bool:
        return not (self.shape_only == EVERY_OPERAND or position in self.shape_only)


EVERY_OPERAND = (-1,)


def _defs(kind: str, arity: int, names: str, params: tuple[str, ...] = (), doc: str = "") -> list:
    return [OpDef(name, kind, arity, params, doc) for name in names.split()]


_ALL: list[OpDef] = [
    *_defs("elementwise", 1, "exp log neg abs sqrt rsqrt square tanh sigmoid relu recip"),
    OpDef("inf_to_zero", "elementwise", 1, (), "x where x is finite, else 0 (a -inf running max)"),
    OpDef("scale", "elementwise", 1, ("c",), "x * c"),
    OpDef("div_scalar", "elementwise", 1, ("c",), "x / c"),
    OpDef("cast", "elementwise", 1, ("dtype",), "x converted to dtype"),
    OpDef("softmax", "elementwise", 1, ("label",), "softmax over one labelled axis"),
    *_defs("elementwise", 2, "add sub mul div maximum minimum"),
    OpDef("safe_div", "elementwise", 2, (), "x / y where y != 0, else 0 (rows that see no key)"),
    OpDef("cast_like", "elementwise", 2, (), "x converted to the dtype of y (y is not read)", (1,)),
    OpDef("select", "elementwise", 3, (), "a where cond else b"),
    OpDef("const", "elementwise", 0, ("c",), "a float32 scalar constant (inf, -inf allowed)"),
    OpDef("iconst", "elementwise", 0, ("n",), "an int32 scalar constant (loop bounds)"),
    OpDef(
        "full",
        "elementwise",
        -1,
        ("c",),
        "a float32 tensor filled with c; its labels take their sizes from the operands, "
        "which are not read",
        EVERY_OPERAND,
    ),
    OpDef(
        "pad_tiles",
        "elementwise",
        1,
        ("label", "size"),
        "x padded with zeros along label to a multiple of size",
    ),
    OpDef(
        "rsqrt_size", "elementwise", 1, ("label",), "1/sqrt(size of label): a scalar", EVERY_OPERAND
    ),
    OpDef(
        "num_tiles",
        "elementwise",
        1,
        ("label", "size"),
        "ceil(size of label / size): int32",
        EVERY_OPERAND,
    ),
    OpDef(
        "tile",
        "elementwise",
        2,
        ("label", "size"),
        "tile j of x along label (operand 1 is j); rows past the end read as 0",
    ),
    OpDef(
        "put_tile",
        "elementwise",
        3,
        ("label", "size"),
        "x with tile j (operand 2) along label replaced by operand 1",
    ),
    OpDef(
        "crop",
        "elementwise",
        2,
        ("label",),
        "x cut along label to the size that label has in operand 1 (not read)",
        (1,),
    ),
    OpDef(
        "attn_mask",
        "elementwise",
        4,
        ("bq", "bk", "left", "right"),
        "visibility of key tile j (operand 3) to query tile i (operand 2), output `qk` of size "
        "[min(bq, Sq), min(bk, Skv)] (bq 0: all queries); query x sees key y iff x < Sq, "
        "y < Skv and "
        "x+o-left <= y <= x+o+right with o = Skv - Sq (inf: unbounded)",
        (0, 1),
    ),
    *(
        OpDef(
            name,
            "elementwise",
            3,
            ("bq", "bk", "left", "right"),
            f"{what}: an int32 scalar from q (operand 0), k (operand 1) and the tile index "
            "(operand 2); positions are the second-to-last axis of q and k; tiles outside this "
            "range are fully masked and skipped",
            (0, 1),
        )
        for name, what in (
            ("first_kv_tile", "the first key tile that query tile i can see"),
            ("end_kv_tile", "one past the last key tile that query tile i can see"),
            ("first_q_tile", "the first query tile that sees key tile j"),
            ("end_q_tile", "one past the last query tile that sees key tile j"),
        )
    ),
    *(
        OpDef(
            name,
            "elementwise",
            3,
            ("bq", "bk", "left", "right"),
            f"{what}: an int32 scalar from q (operand 0), k (operand 1) and the tile index "
            "(operand 2); the key tiles from first_full_kv_tile to end_full_kv_tile need no mask",
            (0, 1),
        )
        for name, what in (
            (
                "first_full_kv_tile",
                (
                    "the first key tile that every real row of query tile i sees whole, "
                    "clamped to first_kv_tile..end_kv_tile"
                ),
            ),
            (
                "end_full_kv_tile",
                (
                    "one past the last key tile that every real row of query tile i sees whole "
                    "(no padded tail), clamped to first_full_kv_tile..end_kv_tile"
                ),
            ),
        )
    ),
    OpDef(
        "dropout_keep",
        "elementwise",
        5,
        ("p",),
        "keep mask of tile (i, j) for dropout rate p: operands key, q tile, k tile, i, j; "
        "output `...qk` from the tiles' labels; the same (key, i, j) always gives the same mask",
        (1, 2),
    ),
    *_defs("reduce", 1, "sum max min mean logsumexp"),
]

OPS: dict[str, OpDef] = {op.name: op for op in _ALL}

# The dtypes that `cast` and an einsum's `acc` attribute name.
DTYPES = frozenset({"float16", "bfloat16", "float32", "float64", "int32", "int64", "bool"})


def lookup(name: str, spec_text: str) -> OpDef:
    """The op named `name`, or a SpecError listing the valid names."""
    try:
        return OPS[name]
    except KeyError:
        raise SpecError(
            f"spec {spec_text!r}: unknown operation {name!r}; "
            f"expected one of {', '.join(sorted(OPS))}"
        ) from None
