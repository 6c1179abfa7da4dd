"""The one spec language of tlir: einsum, reshape, flash, elementwise/reduce ops and loops.

`parse_spec(text)` returns a frozen spec object. The grammar of each family:

einsum     numpy's grammar exactly: `ij,jk->ik`, implicit `ij,jk`, `...ij->...ji`, `ii->i`, `->`.
reshape    the seed's `bsd->bsh64` (digits are an anonymous axis of that size; the one new label
           is inferred) and `bsh64->bsd`; the seed's typo `bsh64-:bsd` is read as `->` with a
           `SpecWarning`. `reshape:bhqd,bgkd->bgrqd` takes label sizes from extra operands.
flash      `flash_<q>,<k>,<v>-><out>_<Bq>_<Bc>[_causal][_window<L>x<R>][_dropout<p>][_lse]`;
           each label's role follows from the terms it appears in (`bqhd,bkhd,bkhv->bqhv` too).
op         `name(args):terms->term` or the seed's unlabelled `softmax_k`, `div_scalar_8`, `sum(1)`.
loop       `loop(carry=<n>)`: operands are lo, hi, invariants, then n carried initial values.

Index-letter legend used by every builder, docstring and test: b batch, h query heads, g kv heads,
r query heads per kv head, q query positions, k key positions, d head dim, v value dim.
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from tlir import ops
from tlir.errors import SpecError, SpecWarning

ELLIPSIS = "..."
LETTERS = frozenset(string.ascii_letters)

Term = tuple[str, ...]  # labels; ELLIPSIS is one element


def term_text(term: Term) -> str:
    return "".join(term)


# --------------------------------------------------------------------------------------- einsum


@dataclass(frozen=True)
class EinsumSpec:
    """A numpy einsum: input terms, the output term, and whether the output was written."""

    text: str
    inputs: tuple[Term, ...]
    output: Term
    explicit: bool

    kind = "einsum"

    @property
    def n_operands(self) -> int:
        return len(self.inputs)

    @property
    def has_ellipsis(self) -> bool:
        return any(ELLIPSIS in t for t in self.inputs)

    def canonical(self) -> str:
        """The explicit form, e.g. `ij,jk->ik` for the implicit `ij,jk`."""
        return ",".join(map(term_text, self.inputs)) + "->" + term_text(self.output)


def _parse_einsum_term(raw: str, text: str, where: str) -> Term:
    labels: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == " ":
            i += 1
        elif char == ".":
            if raw[i : i + 3] != "...":
                raise SpecError(f"spec {text!r}: {where} has a '.' that is not part of '...'")
            if ELLIPSIS in labels:
                raise SpecError(f"spec {text!r}: {where} has more than one '...'")
            labels.append(ELLIPSIS)
            i += 3
        elif char in LETTERS:
            labels.append(char)
            i += 1
        else:
            raise SpecError(
                f"spec {text!r}: invalid character {char!r} in {where}; "
                "einsum labels are letters a-z, A-Z, with ',' '->' '...' and spaces"
            )
    return tuple(labels)


def _implicit_output(inputs: tuple[Term, ...]) -> Term:
    counts: dict[str, int] = {}
    for term in inputs:
        for label in term:
            if label != ELLIPSIS:
                counts[label] = counts.get(label, 0) + 1
    # numpy orders implicit output labels by code point: upper case before lower case
    once = sorted(label for label, n in counts.items() if n == 1)
    prefix = (ELLIPSIS,) if any(ELLIPSIS in t for t in inputs) else ()
    return prefix + tuple(once)


def parse_einsum(text: str) -> EinsumSpec:
    if text.count("->") > 1:
        raise SpecError(f"spec {text!r}: '->' appears more than once; expected at most one")
    body = text.replace("->", "\x00")
    for char in "->":
        if char in body:
            raise SpecError(f"spec {text!r}: stray {char!r}; the output is introduced by '->'")
    explicit = "\x00" in body
    lhs, _, rhs = body.partition("\x00")
    inputs = tuple(
        _parse_einsum_term(raw, text, f"operand {i}") for i, raw in enumerate(lhs.split(","))
    )
    if not explicit:
        return EinsumSpec(text, inputs, _implicit_output(inputs), False)
    output = _parse_einsum_term(rhs, text, "the output")
    known = {label for term in inputs for label in term}
    seen: set[str] = set()
    for label in output:
        if label in seen:
            raise SpecError(f"spec {text!r}: output label {label!r} appears more than once")
        seen.add(label)
        if label != ELLIPSIS and label not in known:
            raise SpecError(f"spec {text!r}: output label {label!r} appears in no input")
    return EinsumSpec(text, inputs, output, True)


# -------------------------------------------------------------------------------------- reshape


@dataclass(frozen=True)
class Axis:
    """One reshape axis: a label (size from elsewhere) or an anonymous fixed size."""

    label: str | None
    size: int | None = None

    def text(self) -> str:
        return self.label if self.label is not None else str(self.size)


@dataclass(frozen=True)
class ReshapeSpec:
    """Row-major reshape of operand 0; extra operands only lend label sizes."""

    text: str
    source: tuple[Axis, ...]
    donors: tuple[Term, ...]
    target: tuple[Axis, ...]

    kind = "reshape"

    @property
    def n_operands(self) -> int:
        return 1 + len(self.donors)


_RESHAPE_AXIS = re.compile(r"([A-Za-z])|([0-9]+)|(\s+)|(.)")


def _parse_reshape_term(raw: str, text: str, where: str) -> tuple[Axis, ...]:
    axes: list[Axis] = []
    for match in _RESHAPE_AXIS.finditer(raw):
        label, digits, _space, other = match.groups()
        if other is not None:
            raise SpecError(
                f"spec {text!r}: invalid character {other!r} in {where}; "
                "reshape axes are letters or digit runs (a fixed size)"
            )
        if label is not None:
            axes.append(Axis(label))
        elif digits is not None:
            if int(digits) == 0:
                raise SpecError(f"spec {text!r}: fixed axis size 0 in {where}; expected >= 1")
            axes.append(Axis(None, int(digits)))
    labels = [a.label for a in axes if a.label is not None]
    for label in labels:
        if labels.count(label) > 1:
            raise SpecError(f"spec {text!r}: label {label!r} appears twice in {where}")
    return tuple(axes)


def parse_reshape(text: str) -> ReshapeSpec:
    body = text.removeprefix("reshape:")
    if "-:" in body and "->" not in body:
        warnings.warn(
            f"spec {text!r}: read '-:' as '->' (a typo of the Rust crate's merge reshape)",
            SpecWarning,
            stacklevel=3,
        )
        body = body.replace("-:", "->", 1)
    if body.count("->") != 1:
        raise SpecError(f"spec {text!r}: a reshape needs exactly one '->'")
    lhs, rhs = body.split("->")
    operands = lhs.split(",")
    source = _parse_reshape_term(operands[0], text, "the source")
    donors = []
    for i, raw in enumerate(operands[1:], start=1):
        donor = _parse_einsum_term(raw, text, f"operand {i}")
        if ELLIPSIS in donor:
            raise SpecError(f"spec {text!r}: '...' is not allowed in a reshape")
        donors.append(donor)
    target = _parse_reshape_term(rhs, text, "the target")
    known = {a.label for a in source} | {label for d in donors for label in d}
    unknown = [a.label for a in target if a.label is not None and a.label not in known]
    if len(unknown) > 1:
        raise SpecError(
            f"spec {text!r}: new target labels {unknown} cannot all be inferred; "
            "expected at most one label that no operand sizes"
        )
    source_labels = [a.label for a in source if a.label is not None]
    shared = [a.label for a in target if a.label in source_labels]
    if shared != [label for label in source_labels if label in shared]:
        raise SpecError(
            f"spec {text!r}: a reshape keeps the order of its shared labels; "
            f"found {''.join(source_labels)} -> {''.join(shared)} (use a transpose)"
        )
    return ReshapeSpec(text, source, tuple(donors), target)


# ---------------------------------------------------------------------------------------- flash

FLASH_TERMS = ("q", "k", "v", "out")


@dataclass(frozen=True)
class FlashRoles:
    """What each label of a flash spec is, read from the terms it appears in (as in einsum).

    batch       in all four terms (with several heads and no grouping, the heads are batch too)
    query       in q and out only: the query positions
    key         in k and v only: the key positions
    head_dim    in q and k only: contracted by the scores
    value_dim   in v and out only
    query_heads, kv_heads: grouped-query attention only, a second label in q and out only and a
                second in k and v only; `h` and `g` in the legend.
    """

    batch: Term
    query: str
    key: str
    head_dim: str
    value_dim: str
    query_heads: str | None = None
    kv_heads: str | None = None

    def canonical(self, term: str) -> Term:
        """The layout tile-flash computes in: batch labels (in q's order), heads, position,
        feature. `term` is one of q, k, v, out, lse."""
        query_side = (self.query_heads,) if self.query_heads else ()
        kv_side = (self.kv_heads,) if self.kv_heads else ()
        tails = {
            "q": query_side + (self.query, self.head_dim),
            "k": kv_side + (self.key, self.head_dim),
            "v": kv_side + (self.key, self.value_dim),
            "out": query_side + (self.query, self.value_dim),
            "lse": query_side + (self.query,),
        }
        return self.batch + tails[term]


@dataclass(frozen=True)
class FlashFlag:
    """One optional part of a flash spec: its syntax, and what it adds to the node.

    `operands` and `results` are the roles the flag adds when it is on (after query, key, value;
    after out). `mask`: "positional" when the flag hides keys by query and key positions alone
    (so the tiles it hides are skipped and the tiles it keeps whole need no mask), "data" when
    by the values of an operand, "" when it hides none.
    """

    name: str
    syntax: str
    pattern: re.Pattern[str]
    value: Callable[[re.Match[str], str], object]
    operands: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    mask: str = ""


def _parse_probability(match: re.Match[str], text: str) -> float:
    raw = match.group(1)
    try:
        p = float(raw)
    except ValueError:
        raise SpecError(f"spec {text!r}: dropout {raw!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise SpecError(f"spec {text!r}: dropout must be in [0, 1], found {p}")
    return p


FLASH_FLAGS: tuple[FlashFlag, ...] = (
    FlashFlag("causal", "causal", re.compile("causal"), lambda m, t: True, mask="positional"),
    FlashFlag(
        "window",
        "window<L>x<R>",
        re.compile(r"window(\d+)x(\d+)"),
        lambda m, t: (int(m.group(1)), int(m.group(2))),
        mask="positional",
    ),
    FlashFlag(
        "dropout",
        "dropout<p>",
        re.compile(r"dropout([0-9.eE+-]+)"),
        _parse_probability,
        operands=("dropout_key",),
    ),
    FlashFlag("lse", "lse", re.compile("lse"), lambda m, t: True, results=("lse",)),
)
_FLAG_SYNTAX = "".join(f"[_{flag.syntax}]" for flag in FLASH_FLAGS)


@dataclass(frozen=True)
class FlashSpec:
    """Fused attention: softmax(q . k / sqrt(d), masked) . v, each label's role from its terms.

    In the legend's layout, q [b,h,q,d], k [b,h,k,d], v [b,h,k,v] -> out [b,h,q,v]; any order of
    the labels means the same attention on transposed operands (`bqhd,bkhd,bkhv->bqhv`, the
    layout of jax.nn.dot_product_attention, is the same node on [batch, seq, heads, dim]).
    Grouped-query attention (`bhqd,bgkd,bgkv->bhqv`): query head i reads kv head i // (h / g).
    The operands are `operand_roles` (query, key, value, then the roles its flags add: a PRNG
    key with dropout); the results `result_roles` (out, then the row logsumexp with `_lse`,
    labelled as out without the value dim, float32).
    """

    text: str
    q: Term
    k: Term
    v: Term
    out: Term
    block_q: int
    block_kv: int
    causal: bool = False
    window: tuple[int, int] | None = None
    dropout: float = 0.0
    lse: bool = False
    roles: FlashRoles = field(init=False, repr=False, compare=False)

    kind = "flash"

    def __post_init__(self) -> None:
        roles = flash_roles(self.text, self.q, self.k, self.v, self.out)
        object.__setattr__(self, "roles", roles)

    def _active(self) -> list[FlashFlag]:
        return [flag for flag in FLASH_FLAGS if getattr(self, flag.name)]

    @property
    def operand_roles(self) -> tuple[str, ...]:
        return ("query", "key", "value") + tuple(r for f in self._active() for r in f.operands)

    @property
    def result_roles(self) -> tuple[str, ...]:
        return ("out",) + tuple(r for f in self._active() for r in f.results)

    def operand(self, role: str) -> int | None:
        """The position of the operand that plays `role`, None when the node has none."""
        roles = self.operand_roles
        return roles.index(role) if role in roles else None

    @property
    def n_operands(self) -> int:
        return len(self.operand_roles)

    @property
    def n_results(self) -> int:
        return len(self.result_roles)

    @property
    def grouped(self) -> bool:
        return self.roles.query_heads is not None

    @property
    def lse_term(self) -> Term:
        """The labels of the logsumexp result: out's, without the value dim."""
        return tuple(label for label in self.out if label != self.roles.value_dim)

    def term(self, name: str) -> Term:
        """The written term of q, k, v, out or lse."""
        return self.lse_term if name == "lse" else getattr(self, name)

    def permutation(self, name: str) -> tuple[int, ...]:
        """Axes of the written `name` term in the canonical layout (see FlashRoles)."""
        written = self.term(name)
        return tuple(written.index(label) for label in self.roles.canonical(name))

    @property
    def canonical_layout(self) -> bool:
        """Whether every term is written in the layout tile-flash computes in."""
        names = ("q", "k", "v", "out")
        return all(self.permutation(n) == tuple(range(len(self.term(n)))) for n in names)

    @property
    def positional_mask(self) -> bool:
        """Whether every mask of the node follows from positions alone (see FlashFlag)."""
        return all(flag.mask != "data" for flag in self._active())

    def visible_window(self) -> tuple[int | None, int | None]:
        """(left, right) bounds around the bottom-right diagonal; None is unbounded."""
        left, right = self.window if self.window is not None else (None, None)
        if self.causal:
            right = 0
        return left, right

    def with_options(self, **changes: object) -> FlashSpec:
        """A copy with some fields changed, its text rewritten to match."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        fields.update(changes)
        fields.pop("text")
        return FlashSpec(format_flash(**fields), **fields)  # type: ignore[arg-type]


def format_flash(
    q: Term,
    k: Term,
    v: Term,
    out: Term,
    block_q: int,
    block_kv: int,
    causal: bool = False,
    window: tuple[int, int] | None = None,
    dropout: float = 0.0,
    lse: bool = False,
) -> str:
    """The canonical flash spec text for these fields (flags in FLASH_FLAGS order)."""
    text = f"flash_{term_text(q)},{term_text(k)},{term_text(v)}->{term_text(out)}"
    text += f"_{block_q}_{block_kv}"
    if causal:
        text += "_causal"
    if window is not None:
        text += f"_window{window[0]}x{window[1]}"
    if dropout > 0:
        text += f"_dropout{dropout!r}"
    if lse:
        text += "_lse"
    return text


_FLASH = re.compile(r"flash_([^_]*)_(.*)")


def parse_flash(text: str) -> FlashSpec:
    match = _FLASH.fullmatch(text)
    if match is None:
        raise SpecError(f"spec {text!r}: expected flash_<q>,<k>,<v>-><out>_<Bq>_<Bc>{_FLAG_SYNTAX}")
    einsum_text, rest = match.groups()
    if einsum_text.count("->") != 1 or einsum_text.count(",") != 2:
        raise SpecError(f"spec {text!r}: expected three operands and one output, q,k,v->out")
    lhs, out_text = einsum_text.split("->")
    terms = [_parse_einsum_term(t, text, role) for t, role in zip(lhs.split(","), "qkv")]
    out = _parse_einsum_term(out_text, text, "out")
    q, k, v = terms
    for role, term in (("q", q), ("k", k), ("v", v), ("out", out)):
        if len(term) != 4 or ELLIPSIS in term:
            raise SpecError(
                f"spec {text!r}: {role} term {term_text(term)!r} must have exactly 4 labels "
                "(batch, heads, positions, features, in any order)"
            )
    parts = rest.split("_")
    if len(parts) < 2 or not all(re.fullmatch(r"[0-9]+", p) for p in parts[:2]):
        raise SpecError(f"spec {text!r}: expected block sizes _<Bq>_<Bc> after the output term")
    block_q, block_kv = int(parts[0]), int(parts[1])
    if block_q == 0 or block_kv == 0:
        raise SpecError(f"spec {text!r}: block sizes must be positive, found {block_q}x{block_kv}")
    options: dict[str, object] = {}
    for part in parts[2:]:
        flag, flag_match = _match_flag(part, text)
        if flag.name in options:
            raise SpecError(f"spec {text!r}: flag {flag.name!r} given twice")
        options[flag.name] = flag.value(flag_match, text)
    return FlashSpec(text, q, k, v, out, block_q, block_kv, **options)  # type: ignore[arg-type]


def _match_flag(part: str, text: str) -> tuple[FlashFlag, re.Match[str]]:
    for flag in FLASH_FLAGS:
        flag_match = flag.pattern.fullmatch(part)
        if flag_match is not None:
            return flag, flag_match
    expected = ", ".join(flag.syntax for flag in FLASH_FLAGS)
    raise SpecError(f"spec {text!r}: unknown flash flag {part!r}; expected one of {expected}")


# The role of a label, by the terms it appears in.
_ROLE_OF_PLACES = {
    frozenset(FLASH_TERMS): "batch",
    frozenset({"q", "out"}): "query",
    frozenset({"k", "v"}): "key",
    frozenset({"q", "k"}): "head_dim",
    frozenset({"v", "out"}): "value_dim",
}
_ROLE_RULE = (
    "a flash label is in all four terms (batch), in q and out only (query positions, or query "
    "heads under grouped-query attention), in k and v only (key positions, or kv heads), in q "
    "and k only (the head dim) or in v and out only (the value dim)"
)


def flash_roles(text: str, q: Term, k: Term, v: Term, out: Term) -> FlashRoles:
    """Each label's role from the terms it appears in; a SpecError names a label that fits no
    role, or roles that the labels leave open."""
    places: dict[str, set[str]] = {}
    for name, term in zip(FLASH_TERMS, (q, k, v, out)):
        for label in term:
            if term.count(label) > 1:
                raise SpecError(f"spec {text!r}: label {label!r} repeats in {name}")
            places.setdefault(label, set()).add(name)
    by_role: dict[str, list[str]] = {role: [] for role in _ROLE_OF_PLACES.values()}
    for label, where in places.items():
        role = _ROLE_OF_PLACES.get(frozenset(where))
        if role is None:
            names = [name for name in FLASH_TERMS if name in where]
            found = " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))
            raise SpecError(f"spec {text!r}: label {label!r} is in {found} only; {_ROLE_RULE}")
        by_role[role].append(label)
    for role, what in (("head_dim", "q and k"), ("value_dim", "v and out")):
        if len(by_role[role]) != 1:
            hint = ""
            if not by_role[role]:
                hint = (
                    " (a label in all four terms is a batch label: give the head dim and the "
                    "value dim letters of their own, as in bhqd,bhkd,bhkv->bhqv)"
                )
            raise SpecError(
                f"spec {text!r}: expected one {role.replace('_', ' ')} label, in {what} only; "
                f"found {_listed(by_role[role])}{hint}"
            )
    queries, keys = by_role["query"], by_role["key"]
    if len(queries) != len(keys) or len(queries) not in (1, 2):
        raise SpecError(
            f"spec {text!r}: expected the query positions in q and out only and the key "
            f"positions in k and v only (plus one head label on each side under grouped-query "
            f"attention); found {_listed(queries)} in q and out, {_listed(keys)} in k and v"
        )
    query_heads = kv_heads = None
    query, key = queries[0], keys[0]
    if len(queries) == 2:
        query_heads, query = _split_heads(text, queries, "h", "q", "q and out", "query")
        kv_heads, key = _split_heads(text, keys, "g", "k", "k and v", "kv")
    batch = tuple(label for label in q if label in by_role["batch"])
    head_dim, value_dim = by_role["head_dim"][0], by_role["value_dim"][0]
    return FlashRoles(batch, query, key, head_dim, value_dim, query_heads, kv_heads)


def _split_heads(
    text: str, labels: list[str], heads: str, positions: str, where: str, side: str
) -> tuple[str, str]:
    """(heads, positions) of a grouped-query pair: the places of both labels are the same, so
    the legend decides (`h`/`g` are heads, `q`/`k` positions)."""
    first, second = labels
    if heads in labels:
        return heads, second if first == heads else first
    if positions in labels:
        return (second, first) if first == positions else (first, second)
    raise SpecError(
        f"spec {text!r}: labels {first!r} and {second!r} are both in {where} only: one is the "
        f"{side} heads of grouped-query attention, the other the positions, and their places "
        f"cannot tell which; name the heads {heads!r} or the positions {positions!r}"
    )


def _listed(labels: list[str]) -> str:
    return ", ".join(repr(label) for label in labels) or "none"


# ------------------------------------------------------------------------------ ops and loops


Arg = int | float | str


@dataclass(frozen=True)
class OpSpec:
    """An elementwise or reduce op; `inputs`/`output` are None in the seed's unlabelled form."""

    text: str
    op: str
    args: tuple[Arg, ...]
    inputs: tuple[Term, ...] | None
    output: Term | None

    @property
    def kind(self) -> str:
        return ops.OPS[self.op].kind

    @property
    def labelled(self) -> bool:
        return self.inputs is not None

    @property
    def n_operands(self) -> int:
        if self.inputs is not None:
            return len(self.inputs)
        if self.op == "div_scalar" and self.text.startswith("div_scalar_"):
            return 2  # the seed's placeholder operand
        return ops.OPS[self.op].arity

    @property
    def read_operands(self) -> tuple[int, ...]:
        """Operands the op depends on: all but the seed's `div_scalar_<c>` placeholder."""
        if self.op == "div_scalar" and not self.labelled:
            return (0,)
        return tuple(range(self.n_operands))

    def arg(self, name: str) -> Arg:
        return self.args[ops.OPS[self.op].params.index(name)]


@dataclass(frozen=True)
class LoopSpec:
    """for j in [lo, hi): body(j, invariants..., carried...) -> carried...

    Operands: lo, hi (int scalars), the invariants, then `carry` initial values.
    """

    text: str
    carry: int

    kind = "loop"


@dataclass(frozen=True)
class CustomVjpSpec:
    """A region with its own derivative: `body` computes the results from the operands;
    `grad_body` maps (operands, results, result cotangents) to one cotangent per operand.

    Autodiff backends (JAX) differentiate the node with `grad_body` instead of through `body`:
    this is how tile-flash keeps the backward at O(N) memory (FlashAttention-2's backward).
    """

    text: str

    kind = "custom_vjp"


_OP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\((.*?)\))?(?::(.*))?", re.DOTALL)
_SEED_DIV = re.compile(r"div_scalar_([0-9.eE+-]+)")
_SEED_SOFTMAX = re.compile(r"softmax_([A-Za-z])")


def _parse_arg(raw: str, text: str) -> Arg:
    raw = raw.strip()
    if raw in ("inf", "-inf", "+inf"):
        return float(raw)
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        pass
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", raw):
        return raw
    raise SpecError(f"spec {text!r}: argument {raw!r} is not a number or a name")


def parse_op(text: str) -> OpSpec | LoopSpec:
    seed_div = _SEED_DIV.fullmatch(text)
    if seed_div:
        return OpSpec(text, "div_scalar", (_parse_arg(seed_div.group(1), text),), None, None)
    seed_softmax = _SEED_SOFTMAX.fullmatch(text)
    if seed_softmax:
        return OpSpec(text, "softmax", (seed_softmax.group(1),), None, None)
    match = _OP.fullmatch(text)
    if match is None:
        raise SpecError(f"spec {text!r}: expected name(args):terms->term")
    name, raw_args, raw_terms = match.groups()
    if name == "loop":
        return _parse_loop(text, raw_args)
    args = tuple(_parse_arg(a, text) for a in raw_args.split(",")) if raw_args else ()
    opdef = ops.lookup(name, text)
    if raw_terms is None:
        return _unlabelled(text, opdef, args)
    _check_args(text, opdef, args)
    if raw_terms.count("->") != 1:
        raise SpecError(f"spec {text!r}: expected one '->' after ':'")
    lhs, rhs = raw_terms.split("->")
    inputs = tuple(
        _parse_einsum_term(t, text, f"operand {i}") for i, t in enumerate(lhs.split(","))
    )
    if opdef.arity == 0 and inputs == ((),):
        inputs = ()
    output = _parse_einsum_term(rhs, text, "the output")
    if opdef.arity >= 0 and len(inputs) != opdef.arity:
        raise SpecError(
            f"spec {text!r}: {name} takes {opdef.arity} operand(s), found {len(inputs)} terms"
        )
    for where, term in [*((f"operand {i}", t) for i, t in enumerate(inputs)), ("output", output)]:
        if ELLIPSIS in term:
            raise SpecError(f"spec {text!r}: '...' is not allowed in an op's {where}")
        if len(set(term)) != len(term):
            raise SpecError(f"spec {text!r}: a label repeats in the {where} {term_text(term)!r}")
    return OpSpec(text, name, args, inputs, output)


# What an argument must be, by parameter name; the others are not checked here.
_ARG_RULES: dict[str, tuple[str, Callable[[Arg], bool]]] = {
    "label": ("a label letter", lambda a: isinstance(a, str) and a in LETTERS),
    "size": ("an integer >= 1", lambda a: isinstance(a, int) and a >= 1),
    "bq": ("an integer >= 0", lambda a: isinstance(a, int) and a >= 0),
    "bk": ("an integer >= 1", lambda a: isinstance(a, int) and a >= 1),
    "left": ("an integer >= 0 or inf", lambda a: a == math.inf or _is_count(a)),
    "right": ("an integer >= 0 or inf", lambda a: a == math.inf or _is_count(a)),
    "c": ("a number", lambda a: not isinstance(a, str)),
    "p": ("a probability in [0, 1]", lambda a: not isinstance(a, str) and 0 <= a <= 1),
    "n": ("an integer", lambda a: isinstance(a, int)),
    "dtype": (f"one of {', '.join(sorted(ops.DTYPES))}", lambda a: a in ops.DTYPES),
}


def _is_count(arg: Arg) -> bool:
    return isinstance(arg, int) and arg >= 0


def _check_args(text: str, opdef: ops.OpDef, args: tuple[Arg, ...]) -> None:
    if len(args) != len(opdef.params):
        expected = ", ".join(opdef.params) or "none"
        raise SpecError(
            f"spec {text!r}: {opdef.name} takes arguments ({expected}), found {len(args)}"
        )
    for name, arg in zip(opdef.params, args):
        expected, valid = _ARG_RULES.get(name, ("", lambda a: True))
        if not valid(arg):
            raise SpecError(
                f"spec {text!r}: {opdef.name} argument {name} must be {expected}, found {arg!r}"
            )


# Ops with a rank-polymorphic, unlabelled form (numpy broadcasting); the rest need labels.
UNLABELLED_OPS = frozenset(
    name
    for name, opdef in ops.OPS.items()
    if opdef.kind == "reduce" or opdef.params in ((), ("c",), ("dtype",))
) - {"full"}


def _unlabelled(text: str, opdef: ops.OpDef, args: tuple[Arg, ...]) -> OpSpec:
    if opdef.kind == "reduce":
        if not all(isinstance(a, int) and a >= 0 for a in args):
            raise SpecError(f"spec {text!r}: reduce axes must be non-negative integers")
        if len(set(args)) != len(args):
            raise SpecError(f"spec {text!r}: a reduce axis is repeated in {list(args)}")
        return OpSpec(text, opdef.name, args, None, None)
    if opdef.name not in UNLABELLED_OPS:
        raise SpecError(f"spec {text!r}: {opdef.name} needs labelled terms, name(args):terms->term")
    _check_args(text, opdef, args)
    return OpSpec(text, opdef.name, args, None, None)


def _parse_loop(text: str, raw_args: str | None) -> LoopSpec:
    match = re.fullmatch(r"carry=(\d+)", raw_args or "")
    if match is None:
        raise SpecError(f"spec {text!r}: expected loop(carry=<n>)")
    return LoopSpec(text, int(match.group(1)))


# ------------------------------------------------------------------------------------ dispatch

Spec = EinsumSpec | ReshapeSpec | FlashSpec | OpSpec | LoopSpec | CustomVjpSpec

KINDS = ("einsum", "reshape", "elementwise", "reduce", "flash", "loop", "custom_vjp")


def _looks_like_reshape(text: str) -> bool:
    if text.startswith("reshape:"):
        return True
    if "-:" in text and "->" not in text and "(" not in text:
        return True
    lhs, _, rhs = text.partition("->")
    return "," not in lhs and any(c.isdigit() for c in text) and bool(rhs or lhs)


def parse_spec(text: str, kind: str | None = None) -> Spec:
    """Parse any spec of the language; `kind` resolves names that are also einsums (`exp`).

    Raises SpecError naming the spec and what is wrong with it.
    """
    if not isinstance(text, str):
        raise SpecError(f"a spec must be a string, found {type(text).__name__} {text!r}")
    if kind is not None and kind not in KINDS:
        raise SpecError(f"spec {text!r}: unknown kind {kind!r}; expected one of {KINDS}")
    if kind == "flash" or (kind is None and text.startswith("flash_")):
        return parse_flash(text)
    if kind == "custom_vjp" or (kind is None and text == "custom_vjp"):
        if text != "custom_vjp":
            raise SpecError(f"spec {text!r}: a custom_vjp node's spec is 'custom_vjp'")
        return CustomVjpSpec(text)
    if kind == "reshape" or (kind is None and text.startswith("reshape:")):
        return parse_reshape(text)
    if kind in ("elementwise", "reduce", "loop"):
        spec = parse_op(text)
        if spec.kind != kind:
            raise SpecError(f"spec {text!r}: is an op of kind {spec.kind}, not {kind}")
        return spec
    if kind is None and _is_op_text(text):
        return parse_op(text)
    if kind == "reshape" or (kind is None and _looks_like_reshape(text)):
        return parse_reshape(text)
    return parse_einsum(text)


def _is_op_text(text: str) -> bool:
    """`name(...)`, `name:...`, or a bare op name that is no einsum (`softmax_k`,
    `div_scalar_8`)."""
    if _SEED_DIV.fullmatch(text) or _SEED_SOFTMAX.fullmatch(text):
        return True  # before the name test: `div_scalar_5.65` has a '.' after its name
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text)
    if match is None:
        return False
    rest = text[match.end() :]
    if rest.startswith(("(", ":")):
        return True
    if rest:
        return False
    return text in ops.OPS and not all(c in LETTERS for c in text)
