"""Shape inference: numpy's einsum rules (checked against numpy itself), reshape, flash, ops, loops.

Every einsum of `einsum_cases.py` gets numpy.einsum's output shape on a one-node graph; every
(spec, shapes) pair numpy rejects raises a TlirError, never another exception; hypothesis draws
random spec strings and shapes and compares with numpy. Errors name the node, label and sizes.

Legend: b batch, h query heads, g kv heads, r query heads per kv head, q/k query/key positions,
d head dim, v value dim, s sequence positions before the head split.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tlir.einsum_cases import CASES, INVALID, case_ids
from tlir import (
    EinsumGraph,
    EinsumNode,
    GraphError,
    SpecWarning,
    TlirError,
    infer_shapes,
    parse_spec,
)
from tlir.spec import ELLIPSIS


def one_node(spec: str, shapes, kind: str | None = None, results: int = 1):
    """infer_shapes on a graph of one node reading len(shapes) inputs: the result shapes."""
    graph = EinsumGraph()
    inputs = [graph.add_tensor(f"x{i}") for i in range(len(shapes))]
    outputs = [graph.add_tensor(f"y{i}") for i in range(results)]
    graph.add_node(EinsumNode(spec, tuple(inputs), tuple(outputs), kind=kind))
    graph.validate()
    inferred = infer_shapes(graph, dict(zip(inputs, shapes)))
    return [inferred[t] for t in outputs]


def numpy_shape(spec: str, shapes):
    """numpy.einsum's output shape, or the exception numpy raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.einsum(spec, *(np.zeros(shape) for shape in shapes)).shape
    except Exception as error:  # noqa: BLE001 - any refusal: ValueError, TypeError, ...
        return error


# ----------------------------------------------------------------- the shared einsum corpus


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_einsum_output_shape_is_numpys(case):
    expected = numpy_shape(case.equation, case.shapes)
    assert not isinstance(expected, Exception), f"numpy rejects the case: {expected}"
    assert one_node(case.equation, case.shapes) == [expected]


@pytest.mark.parametrize(
    ("equation", "shapes", "message"), INVALID, ids=[f"{v[0]}-{v[1]}" for v in INVALID]
)
def test_what_numpy_rejects_tlir_rejects(equation, shapes, message):
    assert isinstance(numpy_shape(equation, shapes), Exception), "numpy accepts the case"
    with pytest.raises(TlirError, match=message):
        one_node(equation, shapes)


# ------------------------------------------------------------- random specs against numpy


def ragged_diagonal(spec: str, shapes) -> bool:
    """A label repeated in one operand with two sizes, e.g. 'aa->a' on shape (0, 1).

    numpy's rule is "dimensions must match when being collapsed", but its single-operand view
    path skips the check when the first size is 0 and returns shape (1,) there. tlir applies
    the rule everywhere; these cases count as rejected.
    """
    try:
        terms = parse_spec(spec, "einsum").inputs
    except TlirError:
        return False
    for term, shape in zip(terms, shapes):
        if ELLIPSIS in term:
            at = term.index(ELLIPSIS)
            before, after = term[:at], term[at + 1 :]
            if len(before) + len(after) > len(shape):
                continue
            pairs = [*zip(before, shape), *zip(after, shape[len(shape) - len(after) :])]
        elif len(term) == len(shape):
            pairs = list(zip(term, shape))
        else:
            continue
        sizes: dict[str, int] = {}
        if any(sizes.setdefault(label, size) != size for label, size in pairs):
            return True
    return False


def check_against_numpy(spec: str, shapes, kind: str | None) -> None:
    expected = numpy_shape(spec, shapes)
    if not isinstance(expected, Exception) and ragged_diagonal(spec, shapes):
        expected = ValueError("numpy's unchecked diagonal")
    try:
        found = one_node(spec, shapes, kind)
    except TlirError as error:
        assert isinstance(expected, Exception), f"numpy gives {expected}, tlir raises {error}"
        return
    assert found == [expected], f"numpy: {expected!r}"


SHAPE = st.lists(st.integers(0, 3), max_size=4).map(tuple)


@st.composite
def spec_and_shapes(draw, alphabet: str):
    """Any string of the alphabet; about as many shapes as it has operands, any sizes."""
    spec = draw(st.text(alphabet=alphabet, max_size=14))
    count = spec.split("->")[0].count(",") + 1 + draw(st.sampled_from([0, 0, 0, 1, -1]))
    shapes = draw(st.lists(SHAPE, min_size=max(count, 0), max_size=max(count, 0)))
    return spec, shapes


@st.composite
def fitting_spec_and_shapes(draw):
    """Well-formed terms with shapes built from one size per label, some sizes set to 1,
    '...' of different ranks that broadcast: mostly accepted, so the sizes get compared."""
    labels = "abcAB"
    terms = []
    for _ in range(draw(st.integers(1, 3))):
        term = draw(st.lists(st.sampled_from(labels), max_size=4))
        if draw(st.booleans()):
            term.insert(draw(st.integers(0, len(term))), ELLIPSIS)
        terms.append(term)
    sizes = {label: draw(st.integers(0, 3)) for label in labels}
    broadcast = draw(st.lists(st.integers(0, 3), max_size=3))
    shapes = []
    for term in terms:
        shape: list[int] = []
        for label in term:
            if label == ELLIPSIS:
                rank = draw(st.integers(0, len(broadcast)))
                dims = broadcast[len(broadcast) - rank :]
                shape += [1 if draw(st.integers(0, 4)) == 0 else s for s in dims]
            else:
                shape.append(1 if draw(st.integers(0, 5)) == 0 else sizes[label])
        shapes.append(tuple(shape))
    space = st.sampled_from(["", "", "", " "])
    spec = ",".join(draw(space).join(term) for term in terms)
    if draw(st.booleans()):
        output = draw(st.lists(st.sampled_from([*labels, ELLIPSIS]), max_size=4, unique=True))
        spec += draw(space) + "->" + draw(space) + "".join(output)
    return spec, shapes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_and_shapes("abcAB,->. %$&"))
def test_random_text_against_numpy(case):
    """Without a kind: these characters can only make einsums."""
    check_against_numpy(*case, kind=None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_and_shapes("abcAB,->. %$_(:1"))
def test_random_text_with_junk_against_numpy(case):
    """kind='einsum': digits, '_', '(' and ':' are invalid einsum characters, as in numpy."""
    check_against_numpy(*case, kind="einsum")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fitting_spec_and_shapes())
def test_fitting_shapes_against_numpy(case):
    check_against_numpy(*case, kind=None)


def test_numpys_unchecked_diagonal_is_refused():
    assert numpy_shape("aa->a", [(0, 2)]) == (2,)  # numpy's own quirk
    with pytest.raises(GraphError, match=r"label 'a' repeats in operand 0 with sizes 0 and 2"):
        one_node("aa->a", [(0, 2)])


# ---------------------------------------------------------------------- mismatch messages


def test_mismatch_names_node_label_and_both_sizes():
    graph = EinsumGraph()
    q, k, t, s = (graph.add_tensor(name) for name in ("q", "k", "kt", "s"))
    graph.add_node(EinsumNode("bhkd->bhdk", (k,), (t,)))
    graph.add_node(EinsumNode("bhqd,bhdk->bhqk", (q, t), (s,)))
    message = r"node 1 'bhqd,bhdk->bhqk': label 'd' has size 16 in operand 0 but 8 in operand 1"
    with pytest.raises(GraphError, match=message):
        infer_shapes(graph, {"q": (2, 4, 5, 16), "k": (2, 4, 7, 8)})


SHAPE_ERRORS = [
    ("ij,jk->ik", [(2, 3), (4, 5)], r"label 'j' has size 3 in operand 0 but 4 in operand 1"),
    ("bsd->bsh64", [(2, 5, 100)],
     r"cannot infer the new axis: 1000 elements are not a multiple of 640 \(shape \[2, 5, 100\]\)"),
    ("bsh64->bsd", [(2, 5, 4, 32)], r"fixed source axis 64 found size 32"),
    ("bsh64->bsd", [(2, 5, 4)], r"the source has 4 axes but the operand has shape \[2, 5, 4\]"),
    ("reshape:bsd->bsd64", [(2, 5, 64)],
     r"the target has 40960 elements but the source shape \[2, 5, 64\] has 640"),
    ("reshape:bhqd,bgkd->bgrqd", [(2, 8, 5, 16), (2, 2, 7, 15)],
     r"label 'd' has size 16 in operand 0 but 15 in operand 1"),
    ("reshape:bhqd,bgkd->bgrqd", [(2, 8, 5, 16), (2, 3, 7, 16)],
     r"cannot infer the new axis: 1280 elements are not a multiple of 480"),
    ("reshape:bhqd,bgkd->bgrqd", [(2, 8, 5, 16), (2, 2, 7)],
     r"term 'bgkd' has 4 labels but the operand has rank 3"),
    ("sub:bhqk,bhq->bhqk", [(2, 3, 4, 5), (2, 3, 5)],
     r"label 'q' has size 4 in operand 0 but 5 in operand 1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "shapes", "message"), SHAPE_ERRORS, ids=[row[0] for row in SHAPE_ERRORS]
)
def test_shape_errors(spec, shapes, message):
    with pytest.raises(GraphError, match=rf"^node 0 {re.escape(repr(spec))}: {message}"):
        one_node(spec, shapes)


# -------------------------------------------------------------------------------- reshape


RESHAPES = [
    ("bsd->bsh64", [(2, 5, 256)], (2, 5, 4, 64)),
    ("bsh64->bsd", [(2, 5, 4, 64)], (2, 5, 256)),
    ("bsd->bs2h", [(2, 5, 6)], (2, 5, 2, 3)),
    ("bsd->bsh64", [(2, 5, 0)], (2, 5, 0, 64)),
    ("reshape:bhqd,bgkd->bgrqd", [(2, 8, 5, 16), (2, 2, 7, 16)], (2, 2, 4, 5, 16)),
    ("reshape:bgrqd->bhqd", [(2, 2, 4, 5, 16)], (2, 8, 5, 16)),
    ("reshape:bsd->bsd", [(2, 5, 3)], (2, 5, 3)),
]


@pytest.mark.parametrize(("spec", "shapes", "result"), RESHAPES, ids=[row[0] for row in RESHAPES])
def test_reshape_shapes(spec, shapes, result):
    assert one_node(spec, shapes) == [result]


def test_reshape_typo_has_the_shape_of_the_arrow():
    with pytest.warns(SpecWarning, match=r"read '-:' as '->'"):
        assert one_node("bsh64-:bsd", [(2, 5, 4, 64)]) == [(2, 5, 256)]


# ---------------------------------------------------------------------------------- flash

FLASH = "flash_bhqd,bhkd,bhkv->bhqv_64_64"
FLASH_GQA = "flash_bhqd,bgkd,bgkv->bhqv_64_64"


@pytest.mark.parametrize(
    ("spec", "shapes", "results"),
    [
        (FLASH, [(2, 4, 5, 16), (2, 4, 9, 16), (2, 4, 9, 32)], [(2, 4, 5, 32)]),
        (FLASH, [(2, 4, 9, 16), (2, 4, 5, 16), (2, 4, 5, 32)], [(2, 4, 9, 32)]),
        (FLASH_GQA, [(2, 8, 5, 16), (2, 2, 7, 16), (2, 2, 7, 32)], [(2, 8, 5, 32)]),
        (FLASH_GQA, [(2, 8, 9, 16), (2, 1, 3, 16), (2, 1, 3, 32)], [(2, 8, 9, 32)]),
        (f"{FLASH}_lse", [(2, 4, 5, 16), (2, 4, 9, 16), (2, 4, 9, 32)],
         [(2, 4, 5, 32), (2, 4, 5)]),
        (f"{FLASH}_causal_window3x0", [(2, 4, 5, 16), (2, 4, 9, 16), (2, 4, 9, 32)],
         [(2, 4, 5, 32)]),
        (f"{FLASH}_dropout0.1", [(2, 4, 5, 16), (2, 4, 9, 16), (2, 4, 9, 32), (2,)],
         [(2, 4, 5, 32)]),
    ],
    ids=["sq<skv", "sq>skv", "gqa-sq<skv", "mqa-sq>skv", "lse", "causal-window", "dropout"],
)  # fmt: skip
def test_flash_shapes(spec, shapes, results):
    assert one_node(spec, shapes, results=len(results)) == results


@pytest.mark.parametrize("sq, skv", [(0, 3), (3, 0)])
def test_flash_needs_nonempty_sequences(sq, skv):
    shapes = [(1, 1, sq, 8), (1, 1, skv, 8), (1, 1, skv, 8)]
    with pytest.raises(
        GraphError, match=rf"sequence lengths must be >= 1, found Sq={sq}, Skv={skv}"
    ):
        one_node(FLASH, shapes)


@pytest.mark.parametrize(
    ("spec", "shapes", "message"),
    [
        (FLASH_GQA, [(2, 6, 9, 16), (2, 4, 3, 16), (2, 4, 3, 32)],
         r"query heads 'h'=6 must be a multiple of kv heads 'g'=4"),
        (FLASH_GQA, [(2, 6, 9, 16), (2, 0, 3, 16), (2, 0, 3, 32)],
         r"query heads 'h'=6 must be a multiple of kv heads 'g'=0"),
        (FLASH, [(2, 6, 9, 16), (2, 3, 3, 16), (2, 3, 3, 32)],
         r"label 'h' has size 6 in operand q but 3 in operand k"),
        (FLASH_GQA, [(2, 8, 9, 16), (2, 2, 3, 15), (2, 2, 3, 32)],
         r"label 'd' has size 16 in operand q but 15 in operand k"),
        (FLASH_GQA, [(2, 8, 9, 16), (2, 2, 3, 16), (2, 2, 4, 32)],
         r"label 'k' has size 3 in operand k but 4 in operand v"),
        (FLASH, [(3, 4, 9, 16), (2, 4, 3, 16), (2, 4, 3, 32)],
         r"label 'b' has size 3 in operand q but 2 in operand k"),
        (FLASH, [(2, 4, 9), (2, 4, 3, 16), (2, 4, 3, 32)],
         r"operand q \(bhqd\) must have rank 4, found \[2, 4, 9\]"),
        (f"{FLASH}_dropout0.1", [(2, 4, 5, 16), (2, 4, 9, 16), (2, 4, 9, 32), (2, 2)],
         r"the PRNG key operand must be a key \(shape \[\]\) or uint32\[2\] key data, found shape \[2, 2\]"),
    ],
    ids=["h%g", "g=0", "h-mismatch", "d-mismatch", "k-mismatch", "b-mismatch", "rank", "key"],
)  # fmt: skip
def test_flash_shape_errors(spec, shapes, message):
    with pytest.raises(GraphError, match=rf"^node 0 {re.escape(repr(spec))}: {message}$"):
        one_node(spec, shapes)


# ------------------------------------------------------------------------------------ ops


OP_SHAPES = [
    ("sub:bhqk,bhq->bhqk", None, [(2, 3, 4, 5), (2, 3, 4)], (2, 3, 4, 5)),
    ("max:bhqk->bhq", None, [(2, 3, 4, 5)], (2, 3, 4)),
    ("logsumexp:bhqk->", None, [(2, 3, 4, 5)], ()),
    ("exp:bhqk->bhkq", None, [(2, 3, 4, 5)], (2, 3, 5, 4)),
    ("softmax(k):bhqk->bhqk", None, [(2, 3, 4, 5)], (2, 3, 4, 5)),
    ("select:qk,bhqk,bhqk->bhqk", None, [(4, 5), (2, 3, 4, 5), (2, 3, 4, 5)], (2, 3, 4, 5)),
    ("const(-inf):->", None, [], ()),
    ("rsqrt_size(d):bhqd->", None, [(2, 3, 4, 5)], ()),
    ("tile(k,64):bhkd,->bhkd", None, [(2, 3, 100, 5), ()], (2, 3, 64, 5)),
    ("pad_tiles(k,64):bk->bk", None, [(2, 100)], (2, 128)),
    ("softmax_k", None, [(2, 3, 4, 5)], (2, 3, 4, 5)),
    ("div_scalar_8", None, [(2, 3, 4, 5), (9,)], (2, 3, 4, 5)),
    ("div_scalar_5.656854249492381", None, [(2, 3, 4, 5), (1,)], (2, 3, 4, 5)),
    ("sum(1,2)", None, [(2, 3, 4, 5)], (2, 5)),
    ("sum", "reduce", [(2, 3, 4, 5)], ()),
    ("exp", "elementwise", [(2, 3, 4, 5)], (2, 3, 4, 5)),
    ("add", "elementwise", [(2, 3, 4, 5), (5,)], (2, 3, 4, 5)),
]


@pytest.mark.parametrize(
    ("spec", "kind", "shapes", "result"), OP_SHAPES, ids=[row[0] for row in OP_SHAPES]
)
def test_op_shapes(spec, kind, shapes, result):
    assert one_node(spec, shapes, kind) == [result]


OP_SHAPE_ERRORS = [
    ("exp:bhqk->bhq", None, [(2, 3, 4, 5)],
     r"elementwise output drops labels \['k'\]; use a reduce op for that"),
    ("exp:bhqk->bhqz", None, [(2, 3, 4, 5)], r"output labels \['z'\] appear in no operand"),
    ("exp:bhqk->bhqk", None, [(2, 3, 4)],
     r"operand 0 term 'bhqk' has 4 labels, found shape \[2, 3, 4\]"),
    ("softmax(z):bk->bk", None, [(2, 5)], r"the softmax label 'z' is not in the output"),
    ("rsqrt_size(z):bhqd->", None, [(2, 3, 4, 5)], r"label 'z' appears in no operand"),
    ("rsqrt_size(d):bhqd->d", None, [(2, 3, 4, 5)],
     r"rsqrt_size writes a scalar, found output \('d',\)"),
    ("tile(z,64):bhkd,->bhkd", None, [(2, 3, 100, 5), ()],
     r"the tiled label 'z' is not in the output"),
    ("tile(k,64):bhkd,->bhkd", None, [(2, 3, 100, 5), (1,)],
     r"operand 1 term '' has 0 labels, found shape \[1\]"),
    ("sum(1,7)", None, [(2, 3, 4, 5)], r"axis 7 is out of range for shape \[2, 3, 4, 5\]"),
    ("add", "elementwise", [(2, 3, 4, 5), (4,)],
     r"'\.\.\.' dimensions \[\(2, 3, 4, 5\), \(4,\)\] do not broadcast"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "kind", "shapes", "message"), OP_SHAPE_ERRORS, ids=[row[0] for row in OP_SHAPE_ERRORS]
)
def test_op_shape_errors(spec, kind, shapes, message):
    with pytest.raises(GraphError, match=rf"^node 0 {re.escape(repr(spec))}: {message}"):
        one_node(spec, shapes, kind)


def test_the_seed_placeholder_operand_gets_no_shape():
    graph = EinsumGraph()
    scores, scale, scaled = (graph.add_tensor(n) for n in ("scores", "scale", "scaled"))
    graph.add_node(EinsumNode.elem_binary("div_scalar_8", scores, scale, scaled))
    assert graph.inputs == [scores]
    shapes = infer_shapes(graph, {"scores": (2, 4, 5, 7)})
    assert shapes == {scores: (2, 4, 5, 7), scaled: (2, 4, 5, 7)}


def test_a_read_operand_that_nothing_writes_has_no_shape():
    graph = EinsumGraph()
    x, y, z = (graph.add_tensor(n) for n in "xyz")
    graph.add_node(EinsumNode("ij,jk->ik", (x, y), (z,)))
    graph.add_input(x)  # declared inputs: y is neither written nor an input
    with pytest.raises(GraphError, match=r"node 0 'ij,jk->ik': operand 1 \(tensor 1 'y'\) has no "):
        infer_shapes(graph, {"x": (2, 3)})


# ---------------------------------------------------------------------------------- loops


def accumulate_loop(body_spec: str) -> tuple[EinsumGraph, list[int]]:
    """acc = acc0; for j in [lo, hi): acc = body(x, acc)."""
    body = EinsumGraph()
    j, x, acc, new = (body.add_tensor(n) for n in ("j", "x", "acc", "acc1"))
    body.add_node(EinsumNode(body_spec, (x, acc), (new,)))
    for t in (j, x, acc):
        body.add_input(t)
    body.add_output(new)
    graph = EinsumGraph()
    ids = [graph.add_tensor(n) for n in ("lo", "hi", "x", "acc0", "acc")]
    graph.add_node(EinsumNode.loop(1, ids[:4], ids[4:], body))
    return graph, ids


def test_loop_shapes_carry_through_the_body():
    graph, (lo, hi, x, acc0, acc) = accumulate_loop("add:ij,ij->ij")
    shapes = infer_shapes(graph, {lo: (), hi: (), x: (2, 3), acc0: (2, 3)})
    assert shapes[acc] == (2, 3)


def test_loop_carried_shape_must_not_change():
    graph, (lo, hi, x, acc0, _) = accumulate_loop("ij,ij->i")
    with pytest.raises(GraphError, match=r"carried value 0 enters with shape \[2, 3\] and leaves "):
        infer_shapes(graph, {lo: (), hi: (), x: (2, 3), acc0: (2, 3)})


def test_loop_bounds_must_be_scalars():
    graph, (lo, hi, x, acc0, _) = accumulate_loop("add:ij,ij->ij")
    with pytest.raises(GraphError, match=r"lo and hi must be scalars, found \(2,\), \(\)"):
        infer_shapes(graph, {lo: (2,), hi: (), x: (2, 3), acc0: (2, 3)})


def test_loop_body_errors_say_where():
    graph, (lo, hi, x, acc0, _) = accumulate_loop("add:ij,ij->ij")
    with pytest.raises(GraphError, match=r"^in the body of node 0 'loop\(carry=1\)': node 0 "):
        infer_shapes(graph, {lo: (), hi: (), x: (2, 3), acc0: (2, 4)})


# ------------------------------------------------------------------------- input shapes


@pytest.fixture
def transpose() -> EinsumGraph:
    graph = EinsumGraph()
    x, y = graph.add_tensor("x"), graph.add_tensor("y")
    graph.add_node(EinsumNode("ij->ji", (x,), (y,)))
    return graph


def test_input_shapes_by_index_or_name(transpose):
    assert infer_shapes(transpose, {0: (2, 3)}) == {0: (2, 3), 1: (3, 2)}
    assert infer_shapes(transpose, {"x": [2, 3]}) == {0: (2, 3), 1: (3, 2)}
    assert infer_shapes(transpose, {"x": (np.int64(2), 3)})[1] == (3, 2)


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({}, r"infer_shapes needs the shape of every graph input; missing 0 \('x'\)"),
        ({"nope": (1,)}, r"infer_shapes: unknown tensor 'nope'; the graph's inputs are \['x'\]"),
        ({99: (1,)}, r"infer_shapes: unknown tensor 99"),
        ({"x": (2, -1)}, r"the shape of tensor 'x' has a negative size: \[2, -1\]"),
        ({"x": (2, 1.5)}, r"the shape of tensor 'x' must be integers, found \(2, 1\.5\)"),
        ({"x": "ab"}, r"the shape of tensor 'x' must be integers, found 'ab'"),
        ({"x": 5}, r"the shape of tensor 'x' must be integers, found 5"),
        ({"x": None}, r"the shape of tensor 'x' must be integers, found None"),
        ({"x": (2, 3, 4)}, r"node 0 'ij->ji': term 'ij' has 2 labels but the operand has rank 3"),
    ],
    ids=["missing", "unknown-name", "unknown-index", "negative", "float", "str", "int", "none",
         "rank"],
)  # fmt: skip
def test_input_shape_errors(transpose, shapes, message):
    with pytest.raises(GraphError, match=message):
        infer_shapes(transpose, shapes)


def test_a_cycle_is_reported_by_infer_shapes():
    graph = EinsumGraph()
    _, y, z = (graph.add_tensor(n) for n in "xyz")
    graph.add_node(EinsumNode("ij->ji", (y,), (z,)))
    graph.add_node(EinsumNode("ij->ji", (z,), (y,)))
    with pytest.raises(GraphError, match=r"the graph has a cycle through the nodes"):
        infer_shapes(graph, {"x": (2, 2)})
