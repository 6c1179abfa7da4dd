"""EinsumGraph and EinsumNode: the seed's builder API, arity checks, validate, derived views.

Legend: b batch, h query heads, g kv heads, q/k query/key positions, d head dim, v value dim,
s sequence positions before the head split.
"""

from __future__ import annotations

import re

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlir import (
    EinsumGraph,
    EinsumNode,
    FlashAttentionConfig,
    GraphError,
    MultiHeadAttention,
    SpecError,
)


def graph_of(*names: str) -> EinsumGraph:
    graph = EinsumGraph()
    for name in names:
        graph.add_tensor(name)
    return graph


def chain() -> EinsumGraph:
    """x -> y -> z through two transposes."""
    graph = graph_of("x", "y", "z")
    graph.add_node(EinsumNode("ij->ji", (0,), (1,)))
    graph.add_node(EinsumNode("ij->ji", (1,), (2,)))
    return graph


# ---------------------------------------------------------------------------------- building


def test_add_tensor_returns_consecutive_indices():
    graph = EinsumGraph()
    assert [graph.add_tensor(n) for n in ("Q", "K", "V")] == [0, 1, 2]
    assert graph.tensors == ["Q", "K", "V"]


def test_add_node_returns_its_index():
    graph = graph_of("x", "y", "z")
    assert graph.add_node(EinsumNode("ij->ji", (0,), (1,))) == 0
    assert graph.add_node(EinsumNode("ij->ji", (1,), (2,))) == 1


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        ((7,), (1,), r"node 'ij->ji' reads tensor 7, but the graph has 2 tensors \(0\.\.1\)"),
        ((0,), (2,), r"node 'ij->ji' writes tensor 2, but the graph has 2 tensors \(0\.\.1\)"),
    ],
    ids=["reads-missing", "writes-missing"],
)
def test_add_node_refuses_a_missing_tensor_and_changes_nothing(inputs, outputs, message):
    graph = graph_of("x", "y")
    graph.add_node(EinsumNode("ij->ij", (0,), (1,)))
    before = graph.to_json()
    with pytest.raises(GraphError, match=message):
        graph.add_node(EinsumNode("ij->ji", inputs, outputs))
    assert graph.to_json() == before
    assert len(graph.nodes) == 1


def test_add_node_expects_a_node():
    graph = graph_of("x", "y")
    with pytest.raises(GraphError, match=r"add_node expects an EinsumNode, found str"):
        graph.add_node("ij->ji")  # type: ignore[arg-type]
    assert graph.nodes == []


@pytest.mark.parametrize(
    ("spec", "inputs", "outputs", "message"),
    [
        ("ij,jk->ik", (0,), (2,),
         r"node 'ij,jk->ik': the spec takes 2 operand\(s\), found 1 input tensor\(s\) \[0\]"),
        ("ij->ji", (0, 1), (2,),
         r"the spec takes 1 operand\(s\), found 2 input tensor\(s\) \[0, 1\]"),
        ("ij->ji", (0,), (), r"the spec writes 1 result\(s\), found 0 output tensor\(s\) \[\]"),
        ("ij->ji", (0,), (1, 2), r"the spec writes 1 result\(s\), found 2 output tensor\(s\)"),
        ("flash_bhqd,bhkd,bhkv->bhqv_64_64_lse", (0, 1, 2), (3,),
         r"the spec writes 2 result\(s\), found 1 output tensor\(s\) \[3\]"),
        ("flash_bhqd,bhkd,bhkv->bhqv_64_64_dropout0.1", (0, 1, 2), (3,),
         r"the spec takes 4 operand\(s\), found 3 input tensor\(s\) \[0, 1, 2\]"),
        ("div_scalar_8", (0,), (3,), r"the spec takes 2 operand\(s\), found 1"),
        ("reshape:bhqd,bgkd->bgrqd", (0,), (3,), r"the spec takes 2 operand\(s\), found 1"),
    ],
    ids=["einsum-inputs", "einsum-too-many", "no-result", "two-results", "flash-lse",
         "flash-dropout", "div_scalar", "reshape-donor"],
)  # fmt: skip
def test_spec_operand_count_mismatch(spec, inputs, outputs, message):
    graph = graph_of("a", "b", "c", "d")
    before = graph.to_json()
    with pytest.raises(GraphError, match=message):
        graph.add_node(EinsumNode(spec, inputs, outputs))
    assert graph.to_json() == before


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ((-1,), r"node 'ij->ji': inputs must be tensor indices >= 0, found -1"),
        ((True,), r"inputs must be tensor indices >= 0, found True"),
        (("a",), r"inputs must be tensor indices >= 0, found 'a'"),
        ((1.0,), r"inputs must be tensor indices >= 0, found 1\.0"),
        (3, r"node 'ij->ji': inputs must be a sequence of tensor indices"),
    ],
    ids=["negative", "bool", "str", "float", "not-a-sequence"],
)
def test_node_indices(inputs, message):
    with pytest.raises(GraphError, match=message):
        EinsumNode("ij->ji", inputs, (1,))


def test_node_spec_errors_are_spec_errors():
    with pytest.raises(SpecError, match=r"spec 'ij->ji->ij': '->' appears more than once"):
        EinsumNode("ij->ji->ij", (0,), (1,))
    with pytest.raises(SpecError, match=r"a spec must be a string, found int 5"):
        EinsumNode(5, (0,), (1,))  # type: ignore[arg-type]


def test_only_loops_have_bodies():
    with pytest.raises(
        GraphError, match=r"node 'ij->ji': only loop (and custom_vjp )?nodes have a body"
    ):
        EinsumNode("ij->ji", (0,), (1,), body=EinsumGraph())
    with pytest.raises(GraphError, match=r"node 'loop\(carry=1\)': a loop node needs a body graph"):
        EinsumNode("loop(carry=1)", (0, 1, 2), (3,))


def loop_body(n_inputs: int, n_outputs: int) -> EinsumGraph:
    body = graph_of(*(f"in{i}" for i in range(n_inputs)), *(f"out{i}" for i in range(n_outputs)))
    for i in range(n_inputs):
        body.add_input(i)
    for i in range(n_outputs):
        body.add_node(EinsumNode("ij->ij", (n_inputs - 1,), (n_inputs + i,)))
        body.add_output(n_inputs + i)
    return body


@pytest.mark.parametrize(
    ("inputs", "outputs", "body", "message"),
    [
        ((0, 1), (2,), loop_body(2, 1),
         r"expected lo, hi and 1 carried values, found 2 input tensor\(s\)"),
        ((0, 1, 2), (), loop_body(2, 1),
         r"writes 1 carried value\(s\), found 0 output tensor\(s\)"),
        ((0, 1, 2), (3,), loop_body(3, 1),
         r"the body must take \(j, invariants, carried\) = 2 inputs and return 1; found 3 inputs"),
    ],
    ids=["too-few-inputs", "no-outputs", "body-arity"],
)  # fmt: skip
def test_loop_arity(inputs, outputs, body, message):
    with pytest.raises(GraphError, match=message):
        EinsumNode.loop(1, inputs, outputs, body)


def test_the_seed_constructors():
    unary = EinsumNode.elem_unary("softmax_k", 0, 1)
    binary = EinsumNode.elem_binary("div_scalar_8", 0, 1, 2)
    reduce = EinsumNode.reduce("sum", [1, 2], 0, 1)
    assert (unary.kind, unary.spec, unary.inputs, unary.outputs) == (
        "elementwise", "softmax_k", (0,), (1,),
    )  # fmt: skip
    assert (binary.kind, binary.inputs, binary.outputs) == ("elementwise", (0, 1), (2,))
    assert (reduce.kind, reduce.spec) == ("reduce", "sum(1,2)")
    assert EinsumNode.reduce("max", [], 0, 1).spec == "max"
    assert EinsumNode.elem_unary("exp", 0, 1).kind == "elementwise"  # `exp` is also an einsum


def test_kind_follows_from_the_spec():
    kinds = {
        "ij->ji": "einsum",
        "bsd->bsh64": "reshape",
        "max:bhqk->bhq": "reduce",
        "exp:bhqk->bhqk": "elementwise",
    }
    for spec, kind in kinds.items():
        assert EinsumNode(spec, (0,), (1,)).kind == kind
    flash = EinsumNode("flash_bhqd,bhkd,bhkv->bhqv_64_64", (0, 1, 2), (3,))
    assert flash.kind == "flash"


def test_reads_skip_the_seed_placeholder():
    node = EinsumNode.elem_binary("div_scalar_8", 4, 5, 6)
    assert node.inputs == (4, 5)
    assert node.reads == (4,)
    assert EinsumNode("ij,jk->ik", (0, 1), (2,)).reads == (0, 1)


def test_attrs_are_sorted_strings():
    node = EinsumNode("ij,jk->ik", (0, 1), (2,), attrs=(("z", 1), ("acc", "float32")))
    assert node.attrs == (("acc", "float32"), ("z", "1"))
    assert node.attr("acc") == "float32"
    assert node.attr("missing", "none") == "none"


def test_nodes_are_frozen_and_compare_by_value():
    node = EinsumNode("ij->ji", [0], [1])
    assert node == EinsumNode("ij->ji", (0,), (1,))
    assert node.inputs == (0,)
    with pytest.raises(AttributeError):
        node.spec = "ij->ij"  # type: ignore[misc]


# --------------------------------------------------------------------------- inputs, outputs


def test_derived_inputs_and_outputs():
    graph = chain()
    assert (graph.inputs, graph.outputs) == ([0], [2])
    assert graph.declared_inputs == graph.declared_outputs == []


def test_an_unused_tensor_is_an_input():
    graph = chain()
    graph.add_tensor("unused")
    assert graph.inputs == [0, 3]
    assert graph.outputs == [2]


def test_declared_inputs_and_outputs_win():
    graph = chain()
    graph.add_input(0)
    graph.add_input(0)  # declaring twice declares once
    graph.add_output(1)
    assert (graph.inputs, graph.outputs) == ([0], [1])


@pytest.mark.parametrize(
    ("call", "tensor", "message"),
    [
        ("add_input", 3, r"add_input\(3\): expected a tensor index in 0\.\.2"),
        ("add_output", -1, r"add_output\(-1\): expected a tensor index in 0\.\.2"),
        ("add_input", "x", r"add_input\('x'\): expected a tensor index in 0\.\.2"),
        ("add_input", True, r"add_input\(True\): expected a tensor index in 0\.\.2"),
    ],
    ids=["input-missing", "output-negative", "input-name", "input-bool"],
)
def test_declare_errors(call, tensor, message):
    graph = chain()
    with pytest.raises(GraphError, match=message):
        getattr(graph, call)(tensor)
    assert graph.declared_inputs == graph.declared_outputs == []


def test_the_rust_mha_placeholder_is_not_an_input():
    graph = graph_of("Q", "K", "V")
    (output,) = MultiHeadAttention(FlashAttentionConfig(512, 8)).build_mha_graph(graph)
    placeholder = graph.tensors.index("mha_scale")
    assert graph.inputs == [0, 1, 2]
    assert placeholder not in graph.inputs
    assert graph.outputs == [output]
    graph.validate()


def test_producers_and_consumers():
    graph = chain()
    assert graph.producers() == {1: 0, 2: 1}
    assert graph.consumers(1) == [1]
    assert graph.consumers(2) == []


# ---------------------------------------------------------------------------------- validate


def test_a_valid_graph_validates():
    chain().validate()


def test_validate_rejects_a_cycle():
    graph = graph_of("x", "y", "z")
    graph.add_node(EinsumNode("ij->ji", (1,), (2,)))
    graph.add_node(EinsumNode("ij->ji", (2,), (1,)))
    with pytest.raises(GraphError, match=r"the graph has a cycle through the nodes \['ij->ji', "):
        graph.validate()


def test_validate_rejects_a_node_reading_its_own_result():
    graph = graph_of("x", "y")
    graph.add_node(EinsumNode("ij,jk->ik", (0, 1), (1,)))
    graph.add_input(0)
    with pytest.raises(
        GraphError, match=r"the graph has a cycle through the nodes \['ij,jk->ik'\]"
    ):
        graph.validate()


def test_validate_rejects_a_tensor_written_twice():
    graph = graph_of("x", "y")
    graph.add_node(EinsumNode("ij->ji", (0,), (1,)))
    graph.add_node(EinsumNode("ij->ij", (0,), (1,)))
    message = r"tensor 1 \('y'\) is written twice: by node 0 'ij->ji' and node 1 'ij->ij'"
    with pytest.raises(GraphError, match=message):
        graph.validate()


def test_validate_rejects_a_read_of_an_unwritten_non_input():
    graph = graph_of("x", "y", "w")
    graph.add_node(EinsumNode("ij,jk->ik", (0, 2), (1,)))
    graph.add_input(0)
    message = (
        r"node 0 'ij,jk->ik' reads tensor 2 \('w'\), which no node writes and which is not a "
        r"graph input"
    )
    with pytest.raises(GraphError, match=message):
        graph.validate()


def test_validate_rejects_a_written_input():
    graph = chain()
    graph.add_input(0)
    graph.add_input(1)
    with pytest.raises(GraphError, match=r"tensor 1 \('y'\) is a graph input but node 0 'ij->ji'"):
        graph.validate()


def test_validate_rejects_an_output_never_written():
    graph = chain()
    graph.add_tensor("w")
    graph.add_input(0)
    graph.add_output(3)
    with pytest.raises(GraphError, match=r"output tensor 3 \('w'\) is never written"):
        graph.validate()


def test_validate_checks_loop_bodies():
    body = graph_of("j", "x", "y")
    body.add_node(EinsumNode("ij->ji", (1,), (2,)))
    body.add_node(EinsumNode("ij->ij", (1,), (2,)))
    for t in (0, 1):
        body.add_input(t)
    body.add_output(2)
    graph = graph_of("lo", "hi", "x0", "x")
    graph.add_node(EinsumNode.loop(1, (0, 1, 2), (3,), body))
    with pytest.raises(GraphError, match=r"^in the body of node 0 'loop\(carry=1\)': tensor 2 "):
        graph.validate()


# ----------------------------------------------------------------------------------- views


def test_to_networkx_is_a_bipartite_digraph():
    graph = chain()
    nx_graph = graph.to_networkx()
    assert isinstance(nx_graph, nx.DiGraph)
    assert set(nx_graph.nodes) == {
        ("tensor", 0), ("tensor", 1), ("tensor", 2), ("node", 0), ("node", 1),
    }  # fmt: skip
    assert set(nx_graph.edges) == {
        (("tensor", 0), ("node", 0)),
        (("node", 0), ("tensor", 1)),
        (("tensor", 1), ("node", 1)),
        (("node", 1), ("tensor", 2)),
    }
    assert nx_graph.nodes[("tensor", 0)]["name"] == "x"
    assert nx_graph.nodes[("node", 1)]["spec"] == "ij->ji"
    assert nx_graph.nodes[("node", 1)]["kind"] == "einsum"


def test_topological_order_puts_producers_first():
    graph = graph_of("x", "y", "z")
    graph.add_node(EinsumNode("ij->ji", (1,), (2,)))  # reads y, written by the next node
    graph.add_node(EinsumNode("ij->ji", (0,), (1,)))
    assert graph.topological_order() == [1, 0]
    assert [index for index, _ in graph.iter_nodes()] == [1, 0]


def test_topological_order_keeps_insertion_order_for_ties():
    graph = graph_of("x", "a", "b", "c")
    for target in (3, 1, 2):
        graph.add_node(EinsumNode("ij->ji", (0,), (target,)))
    assert graph.topological_order() == [0, 1, 2]


def test_equality_and_copy():
    graph = chain()
    copy = graph.copy()
    assert copy == graph and copy is not graph
    copy.add_tensor("w")
    assert copy != graph
    assert len(graph.tensors) == 3  # the copy does not share its lists
    assert graph != "not a graph"


def test_repr_shows_counts_not_ids():
    assert repr(chain()) == "<EinsumGraph 3 tensors, 2 nodes>"


# ------------------------------------------------------------------------- random graphs

SPECS = [
    ("ij->ji", 1),
    ("ij,jk->ik", 2),
    ("exp:ij->ij", 1),
    ("add", 2),
    ("div_scalar_8", 2),
    ("softmax_k", 1),
]


@st.composite
def random_graphs(draw):
    graph = EinsumGraph()
    for i in range(draw(st.integers(1, 6))):
        graph.add_tensor(f"t{i}")
    for _ in range(draw(st.integers(0, 6))):
        spec, arity = draw(st.sampled_from(SPECS))
        tensors = st.integers(0, len(graph.tensors) - 1)
        inputs = tuple(draw(st.lists(tensors, min_size=arity, max_size=arity)))
        kind = "elementwise" if spec in ("add", "softmax_k", "div_scalar_8") else None
        graph.add_node(EinsumNode(spec, inputs, (draw(tensors),), kind=kind))
    return graph


VALIDATE_ERRORS = (
    r"is written twice: by node|which no node writes and which is not a graph input|"
    r"is a graph input but node|is never written|the graph has a cycle through the nodes"
)


@settings(max_examples=200, deadline=None)
@given(random_graphs())
def test_random_graphs_validate_or_raise_graph_errors(graph):
    written = {t for node in graph.nodes for t in node.outputs}
    read = {t for node in graph.nodes for t in node.inputs}
    assert not set(graph.inputs) & written
    assert set(graph.outputs) == written - read
    try:
        graph.validate()
    except GraphError as error:
        assert re.search(VALIDATE_ERRORS, str(error)), str(error)
        return
    order = graph.topological_order()
    assert sorted(order) == list(range(len(graph.nodes)))
    position = {node: i for i, node in enumerate(order)}
    for producer in range(len(graph.nodes)):
        for t in graph.nodes[producer].outputs:
            for consumer in graph.consumers(t):
                assert position[producer] < position[consumer]
