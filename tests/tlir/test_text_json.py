"""The text form and the two JSON forms: round trips for every builder's graph, golden text,
garbage in, and the Rust crate's serde JSON of the seed's unfused multi-head attention graph.

Legend: b batch, h query heads, g kv heads, q/k query/key positions, d head dim, v value dim,
s sequence positions before the head split.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlir import (
    EinsumGraph,
    EinsumNode,
    FlashAttention,
    FlashAttentionConfig,
    FlashAttentionV2Config,
    GraphError,
    MultiHeadAttention,
    SpecError,
    SpecWarning,
    TlirError,
    format_graph,
    graph_to_rust_json,
    infer_shapes,
    parse_text,
)

SEED_MHA = Path(__file__).parent / "data" / "seed_mha.json"


def qkv() -> EinsumGraph:
    graph = EinsumGraph()
    for name in ("Q", "K", "V"):
        graph.add_tensor(name)
    return graph


def flash_graph(config: FlashAttentionConfig | FlashAttentionV2Config) -> EinsumGraph:
    graph = qkv()
    FlashAttention(config).build_flash_graph(graph)
    return graph


def mha_graph(config: FlashAttentionConfig) -> EinsumGraph:
    graph = qkv()
    MultiHeadAttention(config).build_mha_graph(graph)
    return graph


def ops_graph() -> EinsumGraph:
    """Labelled and unlabelled ops, an accumulator attribute, declared inputs and outputs."""
    graph = EinsumGraph()
    q, k, s, m, e, z, p = (graph.add_tensor(n) for n in ("q", "k", "s", "m", "e", "z", "p"))
    graph.add_node(EinsumNode("bhqd,bhkd->bhqk", (q, k), (s,), attrs=(("acc", "float32"),)))
    graph.add_node(EinsumNode("max:bhqk->bhq", (s,), (m,)))
    graph.add_node(EinsumNode("sub:bhqk,bhq->bhqk", (s, m), (e,)))
    graph.add_node(EinsumNode.reduce("sum", [3], e, z))
    graph.add_node(EinsumNode.elem_unary("exp", z, p))
    graph.add_input(q)
    graph.add_input(k)
    graph.add_output(p)
    return graph


def odd_names_graph() -> EinsumGraph:
    """Names that need quoting, and a name used twice."""
    graph = EinsumGraph()
    names = ("a b", 'say "hi"', "x", "x", "ünï", "", "%t", "t#1")
    ids = [graph.add_tensor(n) for n in names]
    graph.add_node(EinsumNode("ij,jk->ik", (ids[0], ids[1]), (ids[2],)))
    graph.add_node(EinsumNode("ij->ji", (ids[2],), (ids[3],)))
    graph.add_node(EinsumNode("ij,ij->ij", (ids[3], ids[4]), (ids[5],)))
    graph.add_node(EinsumNode("ij->i", (ids[6],), (ids[7],)))
    return graph


def loop_graph() -> EinsumGraph:
    body = EinsumGraph()
    j, x, acc, new = (body.add_tensor(n) for n in ("j", "x", "acc", "acc"))
    body.add_node(EinsumNode("add:ij,ij->ij", (x, acc), (new,)))
    for t in (j, x, acc):
        body.add_input(t)
    body.add_output(new)
    graph = EinsumGraph()
    ids = [graph.add_tensor(n) for n in ("lo", "hi", "x", "acc0", "acc")]
    graph.add_node(EinsumNode.loop(1, ids[:4], ids[4:], body))
    return graph


BUILDERS = {
    "flash-v1": lambda: flash_graph(FlashAttentionConfig(512, 8)),
    "flash-v1-causal": lambda: flash_graph(FlashAttentionConfig(512, 8).with_causal(True)),
    "flash-v1-blocks-64x32": lambda: flash_graph(
        FlashAttentionConfig(256, 4).with_block_sizes(64, 32)
    ),
    "flash-v2-window": lambda: flash_graph(FlashAttentionV2Config(512, 8).with_window(256)),
    "flash-v2-window-causal": lambda: flash_graph(
        FlashAttentionV2Config(512, 8).with_window(256).with_causal(True)
    ),
    "flash-v2-window-pair": lambda: flash_graph(FlashAttentionV2Config(512, 8).with_window((7, 3))),
    "flash-v2-sequence-parallel": lambda: flash_graph(
        FlashAttentionV2Config(512, 8).with_sequence_parallel(True)
    ),
    "flash-gqa": lambda: flash_graph(FlashAttentionConfig(512, 8).with_kv_heads(2)),
    "flash-mqa-causal": lambda: flash_graph(
        FlashAttentionConfig(512, 8).with_kv_heads(1).with_causal(True)
    ),
    "flash-dropout": lambda: flash_graph(FlashAttentionConfig(512, 8).with_dropout(0.1)),
    "mha": lambda: mha_graph(FlashAttentionConfig(512, 8)),
    "mha-dk32": lambda: mha_graph(FlashAttentionConfig(256, 8)),
}
OTHERS = {"ops": ops_graph, "odd-names": odd_names_graph}


@pytest.fixture(params=[*BUILDERS, *OTHERS])
def graph(request) -> EinsumGraph:
    return {**BUILDERS, **OTHERS}[request.param]()


def without_attrs(graph: EinsumGraph) -> EinsumGraph:
    """The graph with its nodes' attributes dropped: the Rust form has no place for them."""
    copy = graph.copy()
    copy.nodes = [replace(node, attrs=()) for node in graph.nodes]
    return copy


def test_text_round_trip(graph):
    text = str(graph)
    assert str(parse_text(text)) == text


def test_text_round_trip_of_a_loop():
    graph = loop_graph()
    assert str(parse_text(str(graph))) == str(graph)


def test_json_round_trip(graph):
    assert EinsumGraph.from_json(graph.to_json()) == graph


def test_json_round_trip_of_a_loop():
    graph = loop_graph()
    assert EinsumGraph.from_json(graph.to_json()) == graph


@pytest.mark.parametrize("builder", BUILDERS)
def test_rust_json_round_trip(builder):
    graph = BUILDERS[builder]()
    assert EinsumGraph.from_json(graph_to_rust_json(graph)) == graph


def test_rust_json_round_trip_drops_only_attributes():
    graph = ops_graph()
    again = EinsumGraph.from_json(graph_to_rust_json(graph))
    assert again != graph
    assert again == without_attrs(graph)
    assert again.nodes[0].attrs == ()


def test_rust_json_is_the_serde_form(graph):
    document = json.loads(graph_to_rust_json(graph))
    assert set(document) == {"tensors", "nodes", "inputs", "outputs", "tensor_metadata"}
    assert document["tensors"] == graph.tensors
    for entry, node in zip(document["nodes"], graph.nodes, strict=True):
        assert set(entry) == {"op", "inputs", "outputs", "metadata"}
        (variant,) = entry["op"]
        assert variant in ("Einsum", "ElemUnary", "ElemBinary", "Reduce")
        assert (entry["inputs"], entry["outputs"]) == (list(node.inputs), list(node.outputs))


def test_rust_json_ops_of_the_mha_graph():
    document = json.loads(graph_to_rust_json(mha_graph(FlashAttentionConfig(512, 8))))
    ops = [entry["op"] for entry in document["nodes"]]
    assert ops[7] == {"ElemBinary": {"op": "div_scalar_8"}}
    assert ops[8] == {"ElemUnary": {"op": "softmax_k"}}
    assert ops[-1] == {"Einsum": {"spec": "bsh64->bsd"}}
    reduce = json.loads(graph_to_rust_json(ops_graph()))["nodes"][3]["op"]
    assert reduce == {"Reduce": {"op": "sum", "axes": [3]}}


def test_loops_have_no_rust_json_form():
    with pytest.raises(
        GraphError, match=r"node 0 'loop\(carry=1\)': loops? (nodes )?have no Rust JSON form"
    ):
        graph_to_rust_json(loop_graph())


def test_parse_text_declares_the_printed_inputs_and_outputs():
    graph = BUILDERS["flash-dropout"]()
    parsed = parse_text(str(graph))
    assert [parsed.tensors[t] for t in parsed.declared_inputs] == [
        "Q", "K", "V", "flash_dropout_key",
    ]  # fmt: skip
    assert [parsed.tensors[t] for t in parsed.declared_outputs] == ["flash_output"]


# ----------------------------------------------------------------------------- golden text

GOLDEN_FLASH = """\
graph(%Q, %K, %V) -> (%flash_output) {
  %flash_q_split = reshape "bsd->bsh64" (%Q)
  %flash_k_split = reshape "bsd->bsh64" (%K)
  %flash_v_split = reshape "bsd->bsh64" (%V)
  %flash_q_transposed = einsum "bshd->bhsd" (%flash_q_split)
  %flash_k_transposed = einsum "bshd->bhsd" (%flash_k_split)
  %flash_v_transposed = einsum "bshd->bhsd" (%flash_v_split)
  %flash_attn_output = flash "flash_bhqd,bhkd,bhkv->bhqv_128_128_causal_window255x0" \
(%flash_q_transposed, %flash_k_transposed, %flash_v_transposed)
  %flash_transposed_back = einsum "bhsd->bshd" (%flash_attn_output)
  %flash_output = reshape "bsh64->bsd" (%flash_transposed_back)
}"""

GOLDEN_FLASH_TYPED = """\
graph(%Q: [2,5,512], %K: [2,9,512], %V: [2,9,512]) -> (%flash_output) {
  %flash_q_split = reshape "bsd->bsh64" (%Q) : [2,5,8,64]
  %flash_k_split = reshape "bsd->bsh64" (%K) : [2,9,8,64]
  %flash_v_split = reshape "bsd->bsh64" (%V) : [2,9,8,64]
  %flash_q_transposed = einsum "bshd->bhsd" (%flash_q_split) : [2,8,5,64]
  %flash_k_transposed = einsum "bshd->bhsd" (%flash_k_split) : [2,8,9,64]
  %flash_v_transposed = einsum "bshd->bhsd" (%flash_v_split) : [2,8,9,64]
  %flash_attn_output = flash "flash_bhqd,bhkd,bhkv->bhqv_128_128_causal_window255x0" \
(%flash_q_transposed, %flash_k_transposed, %flash_v_transposed) : [2,8,5,64]  <-- here
  %flash_transposed_back = einsum "bhsd->bshd" (%flash_attn_output) : [2,5,8,64]
  %flash_output = reshape "bsh64->bsd" (%flash_transposed_back) : [2,5,512]
}"""


def test_golden_text_of_the_v2_flash_graph():
    assert str(BUILDERS["flash-v2-window-causal"]()) == GOLDEN_FLASH


def test_golden_typed_text_marks_a_node():
    graph = BUILDERS["flash-v2-window-causal"]()
    shapes = infer_shapes(graph, {"Q": (2, 5, 512), "K": (2, 9, 512), "V": (2, 9, 512)})
    text = format_graph(graph, shapes=shapes, marked=6)
    assert text == GOLDEN_FLASH_TYPED
    without_mark = text.replace("  <-- here", "")
    assert str(parse_text(without_mark)) == GOLDEN_FLASH  # types are read and dropped


def test_golden_text_of_odd_names():
    assert str(odd_names_graph()) == (
        'graph(%"a b", %"say \\"hi\\"", %"\\u00fcn\\u00ef", %"%t") -> (%"", %"t#1") {\n'
        '  %x = einsum "ij,jk->ik" (%"a b", %"say \\"hi\\"")\n'
        '  %x#1 = einsum "ij->ji" (%x)\n'
        '  %"" = einsum "ij,ij->ij" (%x#1, %"\\u00fcn\\u00ef")\n'
        '  %"t#1" = einsum "ij->i" (%"%t")\n'
        "}"
    )


def test_golden_text_of_attributes_and_declared_io():
    assert str(ops_graph()) == (
        "graph(%q, %k) -> (%p) {\n"
        '  %s = einsum "bhqd,bhkd->bhqk" (%q, %k) [acc=float32]\n'
        '  %m = reduce "max:bhqk->bhq" (%s)\n'
        '  %e = elementwise "sub:bhqk,bhq->bhqk" (%s, %m)\n'
        '  %z = reduce "sum(3)" (%e)\n'
        '  %p = elementwise "exp" (%z)\n'
        "}"
    )


# -------------------------------------------------------------------------- random graphs

NAMES = st.text(alphabet='ab_.#%" \\\u00e9\n', max_size=4)


@st.composite
def random_graphs(draw):
    graph = EinsumGraph()
    for _ in range(draw(st.integers(1, 6))):
        graph.add_tensor(draw(NAMES))
    tensors = st.integers(0, len(graph.tensors) - 1)
    for _ in range(draw(st.integers(0, 5))):
        spec, arity, kind = draw(
            st.sampled_from(
                [
                    ("ij->ji", 1, None),
                    ("ij,jk->ik", 2, None),
                    ("bsd->bsh64", 1, None),
                    ("exp", 1, "elementwise"),
                    ("div_scalar_8", 2, None),
                    ("sum(0)", 1, None),
                    ("max:ij->i", 1, None),
                ]
            )
        )
        inputs = tuple(draw(st.lists(tensors, min_size=arity, max_size=arity)))
        attrs = draw(st.sampled_from([(), (("acc", "float32"),), (("b", "1"), ("a", "x.y"))]))
        graph.add_node(EinsumNode(spec, inputs, (draw(tensors),), kind=kind, attrs=attrs))
    if draw(st.booleans()):
        for t in draw(st.lists(tensors, max_size=2)):
            graph.add_input(t)
    return graph


@settings(max_examples=200, deadline=None)
@given(random_graphs())
def test_random_graphs_round_trip(graph):
    assert str(parse_text(str(graph))) == str(graph)
    assert EinsumGraph.from_json(graph.to_json()) == graph
    assert EinsumGraph.from_json(graph_to_rust_json(graph)) == without_attrs(graph)


# ---------------------------------------------------------------------------- garbage text

NODE = '%b = einsum "ij->ji" (%a)'

GARBAGE_TEXT = [
    ("", GraphError, r"text IR line 1: expected 'graph', found the end of the text"),
    ("garbage", GraphError, r"text IR line 1: expected 'graph', found 'garbage'"),
    ("graph(", GraphError, r"text IR line 1: expected ref, found the end of the text"),
    ("graph(%a) -> (%b) {", GraphError, r"text IR line 1: expected ref, found the end"),
    (f"graph(%a) -> (%b) {{\n  {NODE}\n}} extra", GraphError,
     r"text IR line 3: expected end, found 'extra'"),
    (f"graph(%a) -> (%c) {{\n  {NODE}\n}}", GraphError,
     r"text IR: output %c is not defined in the graph"),
    ("graph(%a) -> (%b) {\n  %b = einsum ij->ji (%a)\n}", GraphError,
     r"text IR line 2: unexpected character '>'"),
    ('graph(%a) -> (%b) {\n  %b = einsum "ij->ji (%a)\n}', GraphError,
     r"text IR line 2: unexpected character '\"'"),
    ('graph(%a) -> (%b) {\n  %b = einsum "ij->ji" (%a\n}', GraphError,
     r"text IR line 3: expected ',', found '}'"),
    ('graph(%a) -> (%b) {\n  %b = einsum "ij->ji" (%a#x)\n}', GraphError,
     r"text IR line 2: unexpected character '#'"),
    ("gr\u00e4ph", GraphError, r"text IR line 1: unexpected character '\u00e4'"),
    ('graph(%a) -> (%b) {\n  %b = einsum "ij->" (%a, %a)\n}', GraphError,
     r"text IR line 2: node 'ij->': the spec takes 1 operand\(s\), found 2"),
    ('graph(%a) -> (%b) {\n  %b = einsum "ij-" (%a)\n}', SpecError,
     r"text IR line 2: spec 'ij-': stray '-'"),
    ('graph(%a) -> (%b) {\n  %b = bogus "ij->ji" (%a)\n}', SpecError,
     r"text IR line 2: spec 'ij->ji': unknown kind 'bogus'"),
    ('graph(%a) -> (%b) {\n  %b = einsum "\\x" (%a)\n}', GraphError,
     r"text IR line 2: \"\\x\" is not a valid JSON string"),
    ('graph(%"\\q") -> () {\n}', GraphError,
     r"text IR: tensor %\"\\q\": \"\\q\" is not a valid JSON string \(Invalid \\escape"),
    ('graph(%a) -> (%b) {\n  %b = einsum "ij->ji" (%a) {\n  graph() -> () {\n  }\n  }\n}',
     GraphError, r"text IR line 2: node 'ij->ji': only loop (and custom_vjp )?nodes have a body"),
    ("graph() -> () {" + '%a = loop "loop(carry=0)" () { graph() -> () {' * 2000, GraphError,
     r"text IR: loop bodies are nested too deeply to read"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "error", "message"), GARBAGE_TEXT, ids=[str(i) for i in range(len(GARBAGE_TEXT))]
)
def test_garbage_text(text, error, message):
    with pytest.raises(error, match=message):
        parse_text(text)


@pytest.mark.parametrize("value", [None, 5, b"graph() -> () {}"], ids=["none", "int", "bytes"])
def test_parse_text_expects_a_string(value):
    with pytest.raises(GraphError, match=r"parse_text expects a string, found "):
        parse_text(value)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='graph()->{}%"=, \n[]:#einsumflash_0123456789\\x', max_size=60))
def test_random_text_raises_only_tlir_errors(text):
    try:
        parse_text(text)
    except TlirError as error:
        assert re.match(r"(text IR|spec |node )", str(error)), str(error)


# ---------------------------------------------------------------------------- garbage JSON


def rust(*nodes: dict, **extra) -> str:
    return json.dumps({"tensors": ["a", "b"], "nodes": list(nodes), **extra})


def einsum_node(spec="ij->ji", inputs=(0,), outputs=(1,)) -> dict:
    return {"op": {"Einsum": {"spec": spec}}, "inputs": list(inputs), "outputs": list(outputs)}


def tlir_json(*nodes: dict, version: int = 1) -> str:
    return json.dumps(
        {"format": "tlir", "version": version, "tensors": ["a", "b"], "nodes": list(nodes)}
    )


GARBAGE_JSON = [
    ("", GraphError, r"not valid JSON: Expecting value: line 1 column 1"),
    ("{", GraphError, r"not valid JSON: Expecting property name"),
    (b"\xff\xfe", GraphError, r"not valid JSON"),
    (None, GraphError, r"not valid JSON: the JSON object must be str, bytes or bytearray"),
    ("[" * 100_000, GraphError, r"not valid JSON: nested too deeply to read"),
    ("[]", GraphError, r"a graph's JSON must be an object, found list"),
    ("5", GraphError, r"a graph's JSON must be an object, found int"),
    ('{"tensors": 5}', GraphError, r"graph JSON needs a list 'tensors'; found 5"),
    ('{"tensors": [], "nodes": {}}', GraphError, r"graph JSON needs a list 'nodes'; found \{\}"),
    ('{"tensors": [1], "nodes": []}', GraphError, r"tensor names must be strings, found 1"),
    (rust(5), GraphError, r"node 0 must be an object, found 5"),
    (rust({}), GraphError, r"malformed graph JSON: KeyError: 'op'"),
    (rust({"op": "Einsum", "inputs": [0], "outputs": [1]}), GraphError,
     r"Rust node op must be one of Einsum, ElemUnary, ElemBinary, Reduce; found 'Einsum'"),
    (rust({"op": {"Foo": {}}, "inputs": [0], "outputs": [1]}), GraphError,
     r"unknown Rust op 'Foo'; expected Einsum, ElemUnary, ElemBinary or Reduce"),
    (rust({"op": {"Einsum": {}}, "inputs": [0], "outputs": [1]}), GraphError,
     r"malformed graph JSON: KeyError: 'spec'"),
    (rust(einsum_node(outputs=(7,))), GraphError,
     r"node 0 of the JSON: node 'ij->ji' writes tensor 7, but the graph has 2 tensors"),
    (rust({**einsum_node(), "inputs": 0}), GraphError, r"malformed graph JSON: TypeError"),
    (rust(einsum_node(spec=5)), SpecError,
     r"node 0 of the JSON: a spec must be a string, found int 5"),
    (rust(einsum_node(spec="ij->ji->ij")), SpecError,
     r"node 0 of the JSON: spec 'ij->ji->ij': '->' appears more than once"),
    (rust({"op": {"Reduce": {"op": "sum", "axes": [-1]}}, "inputs": [0], "outputs": [1]}),
     SpecError, r"spec 'sum\(-1\)': reduce axes must be non-negative integers"),
    (rust({"op": {"Reduce": {"op": "sum", "axes": "x"}}, "inputs": [0], "outputs": [1]}),
     GraphError, r"malformed graph JSON: ValueError"),
    (rust({"op": {"ElemUnary": {"op": "bogus"}}, "inputs": [0], "outputs": [1]}), SpecError,
     r"unknown operation 'bogus'; expected one of"),
    (rust(einsum_node(), inputs=[5]), GraphError, r"add_input\(5\): expected a tensor index"),
    (rust(einsum_node(), inputs=[True]), GraphError, r"add_input\(True\): expected a tensor"),
    (rust(einsum_node(), outputs="b"), GraphError, r"add_output\('b'\): expected a tensor index"),
    (tlir_json(version=2), GraphError, r"tlir JSON version 2; this tlir reads 1"),
    (tlir_json({"spec": "ij->ji", "inputs": [0], "outputs": [1]}), GraphError,
     r"malformed graph JSON: KeyError: 'kind'"),
    (tlir_json({"kind": "einsum", "spec": "ij->ji", "inputs": [0], "outputs": [1], "attrs": 5}),
     GraphError, r"malformed graph JSON: AttributeError"),
    (tlir_json({"kind": "loop", "spec": "loop(carry=0)", "inputs": [0, 1], "outputs": [],
                "body": 5}), GraphError, r"malformed graph JSON: AttributeError"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "error", "message"), GARBAGE_JSON, ids=[str(i) for i in range(len(GARBAGE_JSON))]
)
def test_garbage_json(text, error, message):
    with pytest.raises(error, match=message):
        EinsumGraph.from_json(text)


JSON_KEYS = st.sampled_from(
    ["tensors", "nodes", "op", "Einsum", "Reduce", "spec", "inputs", "outputs", "axes", "kind"]
    + ["format", "version", "body", "attrs"]
)
JSON_LEAVES = st.none() | st.booleans() | st.integers(-2, 9) | st.sampled_from(["a", "ij->ji"])
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JSON_KEYS, inner, max_size=4),
    max_leaves=20,
)


JSON_ERRORS = (
    r"(a graph's JSON must be an object|graph JSON needs a list|tensor names must be strings|"
    r"node \d+ |malformed graph JSON: |tlir JSON version|add_input\(|add_output\()"
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_random_json_raises_only_tlir_errors(document):
    try:
        EinsumGraph.from_json(json.dumps(document))
    except TlirError as error:
        assert re.match(JSON_ERRORS, str(error)), str(error)


# --------------------------------------------------------------- the Rust crate's MHA JSON


def load_seed_mha() -> EinsumGraph:
    with pytest.warns(SpecWarning, match=r"spec 'bsh64-:bsd': read '-:' as '->'"):
        return EinsumGraph.from_json(SEED_MHA.read_text())


def test_seed_mha_json_loads_with_the_typo_warning():
    graph = load_seed_mha()
    assert len(graph.nodes) == 12
    assert [node.kind for node in graph.nodes] == [
        "reshape", "reshape", "reshape", "einsum", "einsum", "einsum", "einsum",
        "elementwise", "elementwise", "einsum", "einsum", "reshape",
    ]  # fmt: skip
    graph.validate()


def test_seed_mha_inputs_are_exactly_q_k_v():
    graph = load_seed_mha()
    assert [graph.tensors[t] for t in graph.inputs] == ["Q", "K", "V"]
    assert [graph.tensors[t] for t in graph.outputs] == ["mha_output"]


def test_seed_mha_shapes_infer():
    graph = load_seed_mha()
    shapes = infer_shapes(graph, {"Q": (2, 5, 512), "K": (2, 7, 512), "V": (2, 7, 512)})
    by_name = {graph.tensors[t]: shape for t, shape in shapes.items()}
    assert by_name["q_split"] == (2, 5, 8, 64)
    assert by_name["mha_scores"] == (2, 8, 5, 7)
    assert by_name["mha_attention_weights"] == (2, 8, 5, 7)
    assert by_name["mha_output"] == (2, 5, 512)
    assert "mha_scale" not in by_name  # the placeholder nothing writes


def test_seed_mha_matches_tlirs_builder_but_for_names_and_the_typo():
    seed = load_seed_mha()
    built = mha_graph(FlashAttentionConfig(512, 8))
    assert [node.spec for node in seed.nodes[:-1]] == [node.spec for node in built.nodes[:-1]]
    assert (seed.nodes[-1].spec, built.nodes[-1].spec) == ("bsh64-:bsd", "bsh64->bsd")
    assert [(n.inputs, n.outputs) for n in seed.nodes] == [
        (n.inputs, n.outputs) for n in built.nodes
    ]


def test_seed_mha_round_trips_through_rust_json():
    graph = load_seed_mha()
    with pytest.warns(SpecWarning):
        again = EinsumGraph.from_json(graph_to_rust_json(graph))
    assert again == graph
    document = json.loads(graph_to_rust_json(graph))
    assert document == {**json.loads(SEED_MHA.read_text()), "tensor_metadata": {}}
