"""The spec grammar: einsum, reshape, flash, elementwise/reduce ops and loops.

Tables of valid specs with their parse and of invalid specs with a message regex; every einsum of
opt_einsum's, numpy's and JAX's own test lists parses (`einsum_cases.py`); hypothesis for the
flash grammar's round trip and for parse_spec on random text.

Legend: b batch, h query heads, g kv heads, r query heads per kv head, q/k query/key positions,
d head dim, v value dim.
"""

from __future__ import annotations

import dataclasses

import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opt_einsum.parser import parse_einsum_input

from tests.tlir.einsum_cases import CASES, case_ids
from tlir import (
    EinsumSpec,
    FlashSpec,
    LoopSpec,
    OpSpec,
    ReshapeSpec,
    SpecError,
    SpecWarning,
    TlirError,
    format_flash,
    parse_spec,
)
from tlir.spec import Axis

# ------------------------------------------------------------------------------------- einsum


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_every_einsum_of_the_test_lists_parses(case):
    spec = parse_spec(case.equation)
    assert isinstance(spec, EinsumSpec)
    assert spec.kind == "einsum"
    assert spec.n_operands == len(case.shapes)
    assert spec.explicit == ("->" in case.equation)
    again = parse_spec(spec.canonical())
    assert (again.inputs, again.output, again.explicit) == (spec.inputs, spec.output, True)


NO_ELLIPSIS = [case for case in CASES if "..." not in case.equation]


@pytest.mark.parametrize("case", NO_ELLIPSIS, ids=case_ids(NO_ELLIPSIS))
def test_output_labels_agree_with_opt_einsum(case):
    """opt_einsum's parser is a Python copy of numpy's: same implicit order, same labels."""
    _, output, _ = parse_einsum_input([case.equation, *case.shapes], shapes=True)
    assert "".join(parse_spec(case.equation).output) == output


VALID_EINSUMS = [
    ("ij,jk", (("i", "j"), ("j", "k")), ("i", "k"), False),
    ("ij,jk->ki", (("i", "j"), ("j", "k")), ("k", "i"), True),
    ("bhqd,bhkd->bhqk", (tuple("bhqd"), tuple("bhkd")), tuple("bhqk"), True),
    ("...ij->...ji", (("...", "i", "j"),), ("...", "j", "i"), True),
    ("i...j", (("i", "...", "j"),), ("...", "i", "j"), False),
    ("...a,b", (("...", "a"), ("b",)), ("...", "a", "b"), False),
    ("ii->i", (("i", "i"),), ("i",), True),
    ("ii", (("i", "i"),), (), False),
    ("iji,i->j", (("i", "j", "i"), ("i",)), ("j",), True),
    ("ba,AB", (("b", "a"), ("A", "B")), ("A", "B", "a", "b"), False),
    ("Zz,zA", (("Z", "z"), ("z", "A")), ("A", "Z"), False),
    ("->", ((),), (), True),
    (",->", ((), ()), (), True),
    ("", ((),), (), False),
    (" i j , j k -> k i ", (("i", "j"), ("j", "k")), ("k", "i"), True),
    ("... , ...", (("...",), ("...",)), ("...",), False),
    ("i->...i", (("i",),), ("...", "i"), True),
]


@pytest.mark.parametrize(
    ("text", "inputs", "output", "explicit"), VALID_EINSUMS, ids=[v[0] for v in VALID_EINSUMS]
)
def test_einsum_parse(text, inputs, output, explicit):
    spec = parse_spec(text)
    assert isinstance(spec, EinsumSpec)
    assert (spec.inputs, spec.output, spec.explicit) == (inputs, output, explicit)
    assert spec.has_ellipsis == any("..." in term for term in inputs)


def test_canonical_writes_the_implicit_output():
    assert parse_spec("ij,jk").canonical() == "ij,jk->ik"
    assert parse_spec("ba,AB").canonical() == "ba,AB->ABab"
    assert parse_spec("...ij, jk").canonical() == "...ij,jk->...ik"


def test_a_name_that_is_also_an_einsum_is_an_einsum_unless_kind_says():
    assert isinstance(parse_spec("exp"), EinsumSpec)
    spec = parse_spec("exp", kind="elementwise")
    assert isinstance(spec, OpSpec) and spec.op == "exp"


# ------------------------------------------------------------------------------------ reshape


def axes(text: str) -> tuple[Axis, ...]:
    """`bsh64` -> (b, s, h, 64): letters are labels, digit runs fixed sizes."""
    result: list[Axis] = []
    digits = ""
    for char in text + " ":
        if char.isdigit():
            digits += char
            continue
        if digits:
            result.append(Axis(None, int(digits)))
            digits = ""
        if char.isalpha():
            result.append(Axis(char))
    return tuple(result)


VALID_RESHAPES = [
    ("bsd->bsh64", axes("bsd"), (), axes("bsh64")),
    ("bsh64->bsd", axes("bsh64"), (), axes("bsd")),
    ("bsd->bs2h", axes("bsd"), (), axes("bs2h")),
    ("reshape:bhqd,bgkd->bgrqd", axes("bhqd"), (tuple("bgkd"),), axes("bgrqd")),
    ("reshape:bgrqd->bhqd", axes("bgrqd"), (), axes("bhqd")),
    ("reshape:bsd->bsd", axes("bsd"), (), axes("bsd")),
    ("reshape: b s d -> b s h 64", axes("bsd"), (), axes("bsh64")),
]


@pytest.mark.parametrize(
    ("text", "source", "donors", "target"), VALID_RESHAPES, ids=[v[0] for v in VALID_RESHAPES]
)
def test_reshape_parse(text, source, donors, target):
    spec = parse_spec(text)
    assert isinstance(spec, ReshapeSpec)
    assert spec.kind == "reshape"
    assert (spec.source, spec.donors, spec.target) == (source, donors, target)
    assert spec.n_operands == 1 + len(donors)


def test_the_seed_typo_is_read_as_an_arrow_with_a_warning():
    with pytest.warns(SpecWarning, match=r"spec 'bsh64-:bsd': read '-:' as '->'"):
        typo = parse_spec("bsh64-:bsd")
    fixed = parse_spec("bsh64->bsd")
    assert isinstance(typo, ReshapeSpec)
    assert (typo.source, typo.donors, typo.target) == (fixed.source, fixed.donors, fixed.target)
    assert typo.text == "bsh64-:bsd"


def test_the_typo_warning_is_only_for_the_typo():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_spec("bsh64->bsd")
        parse_spec("reshape:bhqd,bgkd->bgrqd")


# -------------------------------------------------------------------------------------- flash

FLASH = "flash_bhqd,bhkd,bhkv->bhqv"
FLASH_GQA = "flash_bhqd,bgkd,bgkv->bhqv"

VALID_FLASH = [
    (f"{FLASH}_128_64", {"block_q": 128, "block_kv": 64}),
    (f"{FLASH}_64_64_causal", {"causal": True}),
    (f"{FLASH}_64_64_window255x0", {"window": (255, 0)}),
    (f"{FLASH}_64_64_window0x0", {"window": (0, 0)}),
    (f"{FLASH}_64_64_dropout0.1", {"dropout": 0.1}),
    (f"{FLASH}_64_64_dropout1", {"dropout": 1.0}),
    (f"{FLASH}_64_64_dropout0", {"dropout": 0.0}),
    (f"{FLASH}_64_64_lse", {"lse": True}),
    (
        f"{FLASH}_128_64_causal_window255x0_dropout0.1_lse",
        {"block_q": 128, "causal": True, "window": (255, 0), "dropout": 0.1, "lse": True},
    ),
    (f"{FLASH}_64_64_lse_causal", {"causal": True, "lse": True}),
    (f"{FLASH_GQA}_64_64", {"k": tuple("bgkd"), "v": tuple("bgkv")}),
]


@pytest.mark.parametrize(("text", "changes"), VALID_FLASH, ids=[v[0] for v in VALID_FLASH])
def test_flash_fields(text, changes):
    expected = {
        "q": tuple("bhqd"),
        "k": tuple("bhkd"),
        "v": tuple("bhkv"),
        "out": tuple("bhqv"),
        "block_q": 64,
        "block_kv": 64,
        "causal": False,
        "window": None,
        "dropout": 0.0,
        "lse": False,
        **changes,
    }
    spec = parse_spec(text)
    assert isinstance(spec, FlashSpec)
    assert spec.kind == "flash"
    assert spec.text == text
    assert {name: getattr(spec, name) for name in expected} == expected
    assert spec.n_operands == (4 if expected["dropout"] > 0 else 3)
    assert spec.n_results == (2 if expected["lse"] else 1)
    assert spec.grouped == (expected["k"][1] != "h")


def test_flash_gqa_labels_the_kv_heads_g():
    spec = parse_spec(f"{FLASH_GQA}_64_64")
    assert spec.grouped
    assert (spec.q[1], spec.k[1], spec.v[1], spec.out[1]) == ("h", "g", "g", "h")


@pytest.mark.parametrize(
    ("flags", "visible"),
    [
        ("", (None, None)),
        ("_causal", (None, 0)),
        ("_window3x2", (3, 2)),
        ("_causal_window3x2", (3, 0)),
        ("_window0x5", (0, 5)),
    ],
    ids=["none", "causal", "window", "causal-window", "right-only"],
)
def test_flash_visible_window(flags, visible):
    spec = parse_spec(f"{FLASH}_64_64{flags}")
    assert spec.visible_window() == visible


def test_flash_window_pair_is_stored_as_written_even_when_causal():
    spec = parse_spec(f"{FLASH}_64_64_causal_window3x2")
    assert spec.window == (3, 2)
    assert spec.visible_window() == (3, 0)


def test_format_flash_writes_the_canonical_text():
    text = format_flash(
        tuple("bhqd"), tuple("bgkd"), tuple("bgkv"), tuple("bhqv"), 128, 64,
        causal=True, window=(7, 0), dropout=0.25, lse=True,
    )  # fmt: skip
    assert text == f"{FLASH_GQA}_128_64_causal_window7x0_dropout0.25_lse"
    assert format_flash(tuple("bhqd"), tuple("bhkd"), tuple("bhkv"), tuple("bhqv"), 64, 32) == (
        f"{FLASH}_64_32"
    )


def test_with_options_rewrites_the_text():
    spec = parse_spec(f"{FLASH}_64_64")
    changed = spec.with_options(causal=True, window=(4, 0), block_kv=16)
    assert changed.text == f"{FLASH}_64_16_causal_window4x0"
    assert parse_spec(changed.text) == changed
    assert spec.text == f"{FLASH}_64_64"  # the original is unchanged


labels = st.sampled_from("bhgqkdvxyzBHQ")


@st.composite
def flash_fields(draw):
    """Any letters in the legend's layout; under GQA the heads are named h and g, which is what
    tells them from the positions."""
    grouped = draw(st.booleans())
    pool = "bqkdvxyzBHQ" if grouped else "bhgqkdvxyzBHQ"
    b, h, g, q, k, d, v = draw(st.lists(st.sampled_from(pool), min_size=7, max_size=7, unique=True))
    if grouped:
        h, g = "h", "g"
    kv_head = g if grouped else h
    return {
        "q": (b, h, q, d),
        "k": (b, kv_head, k, d),
        "v": (b, kv_head, k, v),
        "out": (b, h, q, v),
        "block_q": draw(st.integers(1, 512)),
        "block_kv": draw(st.integers(1, 512)),
        "causal": draw(st.booleans()),
        "window": draw(st.none() | st.tuples(st.integers(0, 9999), st.integers(0, 9999))),
        "dropout": draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 1e-3])),
        "lse": draw(st.booleans()),
    }


@settings(max_examples=200, deadline=None)
@given(flash_fields())
def test_flash_format_parse_round_trip(fields):
    text = format_flash(**fields)
    spec = parse_spec(text)
    assert isinstance(spec, FlashSpec)
    assert {name: getattr(spec, name) for name in fields} == fields
    assert format_flash(**fields) == spec.text


@settings(max_examples=100, deadline=None)
@given(flash_fields(), st.data())
def test_flash_roles_follow_the_labels_in_any_layout(fields, data):
    """Transposing the terms changes no role: each term's labels permuted at random."""
    spec = parse_spec(format_flash(**fields))
    permuted = {
        name: tuple(data.draw(st.permutations(fields[name]), label=name))
        for name in ("q", "k", "v", "out")
    }
    moved = parse_spec(format_flash(**{**fields, **permuted}))
    assert dataclasses.replace(moved.roles, batch=spec.roles.batch) == spec.roles
    assert set(moved.roles.batch) == set(spec.roles.batch)
    for name in ("q", "k", "v", "out", "lse"):
        written = moved.term(name)
        assert tuple(written[i] for i in moved.permutation(name)) == moved.roles.canonical(name)
    assert moved.grouped == spec.grouped


@pytest.mark.parametrize(
    ("text", "roles"),
    [
        ("flash_bhqd,bhkd,bhkv->bhqv", ("bh", "q", "k", "d", "v", None, None)),
        ("flash_bqhd,bkhd,bkhv->bqhv", ("bh", "q", "k", "d", "v", None, None)),  # jax's layout
        ("flash_bhqd,bgkd,bgkv->bhqv", ("b", "q", "k", "d", "v", "h", "g")),
        ("flash_bqhd,bkgd,bkgv->bqhv", ("b", "q", "k", "d", "v", "h", "g")),
        ("flash_bxqd,bykd,bykv->bxqv", ("b", "q", "k", "d", "v", "x", "y")),  # positions named
        ("flash_qdbh,kdbh,kvbh->qvbh", ("bh", "q", "k", "d", "v", None, None)),
        ("flash_xsye,xtye,xtyf->xsyf", ("xy", "s", "t", "e", "f", None, None)),
    ],
)
def test_flash_roles(text, roles):
    spec = parse_spec(text + "_8_8")
    batch, *rest = roles
    assert (spec.roles.batch, *dataclasses.astuple(spec.roles)[1:]) == (tuple(batch), *rest)
    assert spec.canonical_layout == (text.startswith("flash_bhqd") or text.startswith("flash_bxqd"))


def test_flash_operands_and_results_by_role():
    plain = parse_spec(f"{FLASH}_8_8")
    assert plain.operand_roles == ("query", "key", "value")
    assert plain.result_roles == ("out",)
    assert plain.operand("dropout_key") is None
    full = parse_spec(f"{FLASH}_8_8_dropout0.5_lse")
    assert full.operand_roles == ("query", "key", "value", "dropout_key")
    assert full.operand("dropout_key") == 3
    assert full.result_roles == ("out", "lse")
    assert parse_spec("flash_bqhd,bkhd,bkhv->bqhv_8_8").lse_term == tuple("bqh")


# ---------------------------------------------------------------------------------------- ops


E, R = "elementwise", "reduce"
BHQK = (tuple("bhqk"),)

VALID_OPS = [
    # text, kind argument, op, args, inputs, output, kind of the op
    ("sub:bhqk,bhq->bhqk", None, "sub", (), (tuple("bhqk"), tuple("bhq")), tuple("bhqk"), E),
    ("max:bhqk->bhq", None, "max", (), BHQK, tuple("bhq"), R),
    ("sum:bhqk->", None, "sum", (), BHQK, (), R),
    ("exp:bhqk->bhqk", None, "exp", (), BHQK, tuple("bhqk"), E),
    ("scale(0.125):bhqk->bhqk", None, "scale", (0.125,), BHQK, tuple("bhqk"), E),
    ("softmax(k):bhqk->bhqk", None, "softmax", ("k",), BHQK, tuple("bhqk"), E),
    ("cast(float32):bhqk->bhqk", None, "cast", ("float32",), BHQK, tuple("bhqk"), E),
    ("const(-inf):->", None, "const", (-math.inf,), (), (), E),
    ("tile(k,64):bhkd,->bhkd", None, "tile", ("k", 64), (tuple("bhkd"), ()), tuple("bhkd"), E),
    ("num_tiles(k,64):bhkd->", None, "num_tiles", ("k", 64), (tuple("bhkd"),), (), E),
    ("exp:bhqk->bhqk", "elementwise", "exp", (), BHQK, tuple("bhqk"), E),
    # the seed's unlabelled forms
    ("softmax_k", None, "softmax", ("k",), None, None, E),
    ("div_scalar_8", None, "div_scalar", (8,), None, None, E),
    ("div_scalar_5.656854249492381", None, "div_scalar", (5.656854249492381,), None, None, E),
    ("div_scalar_1e-3", None, "div_scalar", (1e-3,), None, None, E),
    ("sum(1,2)", None, "sum", (1, 2), None, None, R),
    ("sum(1,2)", "reduce", "sum", (1, 2), None, None, R),
    ("max(3)", None, "max", (3,), None, None, R),
    ("exp", "elementwise", "exp", (), None, None, E),
    ("add", "elementwise", "add", (), None, None, E),
    ("inf_to_zero", None, "inf_to_zero", (), None, None, E),
    ("sum", "reduce", "sum", (), None, None, R),
]


@pytest.mark.parametrize(
    ("text", "kind", "op", "args", "inputs", "output", "op_kind"),
    VALID_OPS,
    ids=[f"{v[0]}-{v[1]}" if v[1] else v[0] for v in VALID_OPS],
)
def test_op_parse(text, kind, op, args, inputs, output, op_kind):
    spec = parse_spec(text, kind)
    assert isinstance(spec, OpSpec)
    assert (spec.op, spec.args, spec.inputs, spec.output) == (op, args, inputs, output)
    assert spec.kind == op_kind
    assert spec.labelled == (inputs is not None)


@pytest.mark.parametrize(
    ("text", "kind", "n_operands", "read"),
    [
        ("softmax_k", None, 1, (0,)),
        ("div_scalar_8", None, 2, (0,)),
        ("sum(1,2)", None, 1, (0,)),
        ("add", "elementwise", 2, (0, 1)),
        ("select:qk,bhqk,bhqk->bhqk", None, 3, (0, 1, 2)),
        ("const(0):->", None, 0, ()),
    ],
    ids=["softmax_k", "div_scalar_8", "sum(1,2)", "add", "select", "const"],
)
def test_op_operands(text, kind, n_operands, read):
    """The seed's div_scalar takes a placeholder second operand that it never reads."""
    spec = parse_spec(text, kind)
    assert (spec.n_operands, spec.read_operands) == (n_operands, read)


def test_op_arg_by_parameter_name():
    spec = parse_spec("tile(k,64):bhkd,->bhkd")
    assert (spec.arg("label"), spec.arg("size")) == ("k", 64)


def test_loop_spec():
    spec = parse_spec("loop(carry=2)")
    assert isinstance(spec, LoopSpec)
    assert (spec.kind, spec.carry) == ("loop", 2)
    assert parse_spec("loop(carry=0)", kind="loop").carry == 0


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ij,jk->ik", "einsum"),
        ("bsd->bsh64", "reshape"),
        ("reshape:bhqd,bgkd->bgrqd", "reshape"),
        ("flash_bhqd,bhkd,bhkv->bhqv_64_64", "flash"),
        ("softmax_k", "elementwise"),
        ("div_scalar_8", "elementwise"),
        ("sub:bhqk,bhq->bhqk", "elementwise"),
        ("sum(1,2)", "reduce"),
        ("max:bhqk->bhq", "reduce"),
        ("loop(carry=1)", "loop"),
    ],
)
def test_kinds(text, kind):
    """A spec's family follows from its text, and naming that family gives the same parse."""
    assert parse_spec(text).kind == kind
    assert parse_spec(text, kind) == parse_spec(text)


# ---------------------------------------------------------------------------- invalid specs

F = FLASH  # a valid flash prefix; the table adds the broken part

INVALID = [
    # --- einsum
    ("i->i->i", None, r"spec 'i->i->i': '->' appears more than once; expected at most one"),
    ("->,->", None, r"'->' appears more than once"),
    ("i-j", None, r"stray '-'; the output is introduced by '->'"),
    ("i>j", None, r"stray '>'"),
    ("i- >j", None, r"stray '-'"),
    ("i.j", None, r"operand 0 has a '\.' that is not part of '\.\.\.'"),
    ("i..", None, r"operand 0 has a '\.' that is not part of '\.\.\.'"),
    ("i->....i", None, r"the output has a '\.' that is not part of '\.\.\.'"),
    ("......i", None, r"operand 0 has more than one '\.\.\.'"),
    ("ij->jj", None, r"output label 'j' appears more than once"),
    ("bqd,bkd->bqz", None, r"spec 'bqd,bkd->bqz': output label 'z' appears in no input"),
    ("i%", None, r"invalid character '%' in operand 0; einsum labels are letters"),
    ("ab,c->a&", None, r"invalid character '&' in the output"),
    ("ij1", "einsum", r"invalid character '1' in operand 0"),
    ("bsd->bsh64", "einsum", r"invalid character '6' in the output"),
    ("\u00e9", None, r"invalid character '\u00e9'"),
    (5, None, r"a spec must be a string, found int 5"),
    (None, None, r"a spec must be a string, found NoneType"),
    ("ij", "bogus", r"unknown kind 'bogus'; expected one of \('einsum', 'reshape'"),
    # --- reshape
    ("bsd->bsh0", None, r"fixed axis size 0 in the target; expected >= 1"),
    ("b0d->bd", None, r"fixed axis size 0 in the source"),
    ("reshape:bsd->bsxy", None, r"new target labels \['x', 'y'\] cannot all be inferred"),
    ("reshape:bsd->sb64", None, r"keeps the order of its shared labels; found bsd -> sb"),
    ("reshape:bsd", None, r"spec 'reshape:bsd': a reshape needs exactly one '->'"),
    ("reshape:bsd->b->s", None, r"a reshape needs exactly one '->'"),
    ("reshape:bbd->b64", None, r"label 'b' appears twice in the source"),
    ("reshape:bsd->bss", None, r"label 's' appears twice in the target"),
    ("reshape:b%d->b64", None, r"invalid character '%' in the source; reshape axes are letters"),
    ("reshape:bsd,b...->bs64", None, r"'\.\.\.' is not allowed in a reshape"),
    ("reshape:bsd,b%->bs64", None, r"invalid character '%' in operand 1"),
    ("bsh64-:bsd-:x", None, r"invalid character '-' in the target"),
    # --- flash: shape of the text and block sizes
    ("flash_", None, r"expected flash_<q>,<k>,<v>-><out>_<Bq>_<Bc>\[_causal\]"),
    (F, None, r"expected flash_<q>,<k>,<v>-><out>_<Bq>_<Bc>"),
    ("bhqd", "flash", r"expected flash_<q>,<k>,<v>-><out>_<Bq>_<Bc>"),
    (f"{F}_64", None, r"expected block sizes _<Bq>_<Bc> after the output term"),
    (f"{F}__64", None, r"expected block sizes _<Bq>_<Bc>"),
    (f"{F}_x_64", None, r"expected block sizes _<Bq>_<Bc>"),
    (f"{F}_0_64", None, r"block sizes must be positive, found 0x64"),
    (f"{F}_64_0", None, r"block sizes must be positive, found 64x0"),
    # --- flash: flags
    (f"{F}_64_64_bogus", None, r"unknown flash flag 'bogus'; expected one of causal, window<L>x<R>, dropout<p>, lse"),
    (f"{F}_64_64_Causal", None, r"unknown flash flag 'Causal'"),
    (f"{F}_64_64_", None, r"unknown flash flag ''"),
    (f"{F}_64_64_causal_causal", None, r"flag 'causal' given twice"),
    (f"{F}_64_64_lse_lse", None, r"flag 'lse' given twice"),
    (f"{F}_64_64_window3", None, r"unknown flash flag 'window3'"),
    (f"{F}_64_64_window3x", None, r"unknown flash flag 'window3x'"),
    (f"{F}_64_64_windowx3", None, r"unknown flash flag 'windowx3'"),
    (f"{F}_64_64_window-1x3", None, r"unknown flash flag 'window-1x3'"),
    (f"{F}_64_64_window1.5x2", None, r"unknown flash flag 'window1\.5x2'"),
    (f"{F}_64_64_window1x1_window2x2", None, r"flag 'window' given twice"),
    (f"{F}_64_64_dropout1.5", None, r"dropout must be in \[0, 1\], found 1\.5"),
    (f"{F}_64_64_dropout-0.1", None, r"dropout must be in \[0, 1\], found -0\.1"),
    (f"{F}_64_64_dropout1e400", None, r"dropout must be in \[0, 1\], found inf"),
    (f"{F}_64_64_dropout1e-", None, r"dropout '1e-' is not a number"),
    (f"{F}_64_64_dropout0.1.2", None, r"dropout '0\.1\.2' is not a number"),
    (f"{F}_64_64_dropoutnan", None, r"unknown flash flag 'dropoutnan'"),
    (f"{F}_64_64_dropout", None, r"unknown flash flag 'dropout'"),
    (f"{F}_64_64_dropout0.1_dropout0.2", None, r"flag 'dropout' given twice"),
    # --- flash: terms and role labels
    ("flash_bhqd,bhkd->bhqv_64_64", None, r"expected three operands and one output, q,k,v->out"),
    ("flash_bhqd,bhkd,bhkv,x->bhqv_64_64", None, r"expected three operands and one output"),
    ("flash_bhqd,bhkd,bhkv->bhqv->x_64_64", None, r"expected three operands and one output"),
    ("flash_bhq,bhkd,bhkv->bhqv_64_64", None, r"q term 'bhq' must have exactly 4 labels"),
    ("flash_bhqd,bhkd,bhkv->bhqvx_64_64", None, r"out term 'bhqvx' must have exactly 4 labels"),
    ("flash_...d,bhkd,bhkv->bhqv_64_64", None, r"q term '\.\.\.d' must have exactly 4 labels"),
    ("flash_bh%d,bhkd,bhkv->bhqv_64_64", None, r"invalid character '%' in q"),
    ("flash_bhqd,chkd,bhkv->bhqv_64_64", None, r"label 'b' is in q, v and out only; a flash "
     r"label is in all four terms \(batch\), in q and out only \(query positions"),
    ("flash_bhqd,bhkd,bhkv->bxqv_64_64", None, r"label 'h' is in q, k and v only"),
    ("flash_bhqd,bgkd,bhkv->bhqv_64_64", None, r"label 'h' is in q, v and out only"),
    ("flash_bhqd,bhkd,bhkv->bhkv_64_64", None, r"label 'q' is in q only"),
    ("flash_bhqd,bhkd,bhqv->bhqv_64_64", None, r"label 'q' is in q, v and out only"),
    ("flash_bhqd,bhke,bhkv->bhqv_64_64", None, r"label 'd' is in q only"),
    ("flash_bhqd,bhkd,bhkv->bhqx_64_64", None, r"label 'v' is in v only"),
    ("flash_bhqd,bhkd,bhkd->bhqd_16_32", None, r"expected one head dim label, in q and k only; "
     r"found none \(a label in all four terms is a batch label: give the head dim and the value"),
    ("flash_bhsd,bhsd,bhsd->bhsd_8_8", None, r"expected one head dim label, in q and k only"),
    ("flash_bhqd,bhkd,bhkv->bhqvq_8_8", None, r"out term 'bhqvq' must have exactly 4 labels"),
    ("flash_bhqq,bhkd,bhkv->bhqv_8_8", None, r"label 'q' repeats in q"),
    ("flash_bxzd,byud,byuv->bxzv_8_8", None,
     r"labels 'x' and 'z' are both in q and out only: one is the query heads of grouped-query "
     r"attention, the other the positions, and their places cannot tell which; name the heads "
     r"'h' or the positions 'q'"),
    ("flash_bhqd,bgkd,bhkv->bhqv_8_8", None, r"label 'h' is in q, v and out only"),
    ("flash_bhqd,bgkd,bgkv->bgqv_8_8", None, r"label 'h' is in q only"),
    # --- ops
    ("bogus:a->a", None, r"unknown operation 'bogus'; expected one of .*\bexp\b.*\bsum\b"),
    ("bogus(1)", None, r"unknown operation 'bogus'; expected one of abs, add"),
    ("exp(1):a->a", None, r"exp takes arguments \(none\), found 1"),
    ("scale:a->a", None, r"scale takes arguments \(c\), found 0"),
    ("scale(1,2):a->a", None, r"scale takes arguments \(c\), found 2"),
    ("exp:a->a->a", None, r"expected one '->' after ':'"),
    ("exp:a", None, r"expected one '->' after ':'"),
    ("exp:a,b->a", None, r"exp takes 1 operand\(s\), found 2 terms"),
    ("exp:...a->a", None, r"'\.\.\.' is not allowed in an op's operand 0"),
    ("max:a->...", None, r"'\.\.\.' is not allowed in an op's output"),
    ("exp:aa->a", None, r"a label repeats in the operand 0 'aa'"),
    ("exp:a->aa", None, r"a label repeats in the output 'aa'"),
    ("exp:a%->a", None, r"invalid character '%' in operand 0"),
    ("scale($):a->a", None, r"argument '\$' is not a number or a name"),
    ("scale(1:a->a", None, r"expected name\(args\):terms->term"),
    ("div_scalar_1e", None, r"argument '1e' is not a number or a name"),
    ("tile(k,64)", "elementwise", r"tile needs labelled terms, name\(args\):terms->term"),
    ("softmax", "elementwise", r"softmax needs labelled terms"),
    ("scale", "elementwise", r"scale takes arguments \(c\), found 0"),
    ("sum(-1)", None, r"reduce axes must be non-negative integers"),
    ("sum(1.5)", None, r"reduce axes must be non-negative integers"),
    ("sum(a)", None, r"reduce axes must be non-negative integers"),
    ("exp", "reduce", r"spec 'exp': is an op of kind elementwise, not reduce"),
    ("sum(1)", "loop", r"is an op of kind reduce, not loop"),
    ("loop(carry=x)", None, r"expected loop\(carry=<n>\)"),
    ("loop", "loop", r"expected loop\(carry=<n>\)"),
    # --- op arguments, by parameter
    ("pad_tiles(k,0):bk->bk", None, r"pad_tiles argument size must be an integer >= 1, found 0"),
    ("tile(k,x):bk,->bk", None, r"tile argument size must be an integer >= 1, found 'x'"),
    ("tile(k,2.5):bk,->bk", None, r"tile argument size must be an integer >= 1, found 2\.5"),
    ("tile(1,64):bk,->bk", None, r"tile argument label must be a label letter, found 1"),
    ("softmax(kk):bk->bk", None, r"softmax argument label must be a label letter, found 'kk'"),
    ("num_tiles(k,0):bk->", None, r"num_tiles argument size must be an integer >= 1, found 0"),
    ("attn_mask(a,64,0,0):q,k,,->qk", None, r"attn_mask argument bq must be an integer >= 0"),
    ("attn_mask(0,0,0,0):q,k,,->qk", None, r"attn_mask argument bk must be an integer >= 1"),
    ("attn_mask(0,64,-1,0):q,k,,->qk", None, r"argument left must be an integer >= 0 or inf"),
    ("attn_mask(0,64,0,-inf):q,k,,->qk", None, r"argument right must be an integer >= 0 or inf"),
    ("scale(k):a->a", None, r"scale argument c must be a number, found 'k'"),
    ("const(x):->", None, r"const argument c must be a number, found 'x'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    INVALID,
    ids=[f"{v[0]}-{v[1]}" if v[1] else str(v[0]) for v in INVALID],
)
def test_invalid_spec(text, kind, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)  # `bsh64-:bsd-:x` warns, then fails
        with pytest.raises(SpecError, match=message):
            parse_spec(text, kind)


# -------------------------------------------------------------------- parse_spec on any text

JUNK = st.text(alphabet="bhqkdvgBQ,->.:()_ 0123456789x%e", max_size=24)
PREFIXES = st.sampled_from(
    [
        "",
        "flash_",
        "flash_bhqd,bhkd,bhkv->bhqv_",
        "flash_bhqd,bgkd,bgkv->bhqv_64_64_",
        "reshape:",
        "softmax_",
        "div_scalar_",
        "sum(",
        "tile(",
        "attn_mask(",
        "exp:",
        "loop(carry=",
        "bsh64-:",
    ]
)


@settings(max_examples=300, deadline=None)
@given(PREFIXES, JUNK, st.sampled_from([None, "einsum", "reshape", "elementwise", "reduce"]))
def test_parse_spec_raises_only_spec_errors(prefix, junk, kind):
    text = prefix + junk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        try:
            spec = parse_spec(text, kind)
        except SpecError as error:
            assert repr(text) in str(error)  # every message quotes the spec
            return
    assert spec.text == text
    if kind is not None:
        assert spec.kind == kind


def test_spec_error_is_a_tlir_error():
    with pytest.raises(TlirError):
        parse_spec("i->i->i")


@pytest.mark.parametrize(
    "text, message",
    [
        ("flash_bhqd,bhkd,bhkv->bhqv_\u00b2_16", r"expected block sizes _<Bq>_<Bc>"),
        ("iconst(1.5):->", r"iconst argument n must be an integer, found 1\.5"),
        ("iconst(inf):->", r"iconst argument n must be an integer, found inf"),
        ("cast(foo):ij->ij", r"cast argument dtype must be one of bfloat16, bool, float16"),
        ("sum(1,1)", r"a reduce axis is repeated in \[1, 1\]"),
    ],
    ids=["unicode-digit", "iconst-float", "iconst-inf", "cast-dtype", "reduce-repeat"],
)
def test_argument_checks(text, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(text)
