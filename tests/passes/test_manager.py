"""PassManager: pipelines, verification, traces, printing and error context."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import pytest

import passes
import tlir
from tests.reference import flash_graph, flash_spec


def test_default_pipeline_leaves_no_flash_node_and_records_a_trace():
    manager = passes.PassManager()
    graph = flash_graph(flash_spec("h", 32, 32, causal=True))
    result = manager.run(graph)
    assert [r.name for r in manager.trace] == list(passes.DEFAULT_PIPELINE)
    assert manager.trace[0].changed and manager.trace[0].graph is not graph
    assert all(r.seconds >= 0 for r in manager.trace)
    assert manager.trace[-1].graph is result
    assert not any(node.kind == "flash" for node in result.nodes)


@pytest.mark.parametrize(
    "pipeline", ["tile-flash,dead-code", ["tile-flash", "dead-code"], " tile-flash , dead-code "]
)
def test_pipeline_forms(pipeline):
    assert passes.PassManager(pipeline).pipeline == ["tile-flash", "dead-code"]


def test_unknown_pass_lists_the_available_ones():
    with pytest.raises(
        tlir.TlirError, match=r"unknown pass 'tile-flesh'; available passes: dead-code, tile-flash"
    ):
        passes.PassManager("tile-flash,tile-flesh")
    assert passes.available() == ["dead-code", "tile-flash"]


@dataclass(frozen=True)
class BreaksTheGraph:
    """A pass that writes a tensor twice, to check the manager's verification."""

    name: ClassVar[str] = "break"

    def run(self, graph):
        new = graph.copy()
        new.add_node(graph.nodes[0])
        return new


def test_failing_verification_names_the_pass_and_those_before_it():
    graph = flash_graph(flash_spec("h", 32, 32))
    with pytest.raises(
        tlir.PassError,
        match=r"pass 'break' failed \(passes run before it: tile-flash\).*written twice",
    ):
        passes.PassManager(["tile-flash", BreaksTheGraph()]).run(graph)


def test_print_after_all_changes_and_diff():
    graph = flash_graph(flash_spec("h", 32, 32))
    stream = io.StringIO()
    passes.PassManager(print_after_all=True, stream=stream).run(graph)
    text = stream.getvalue()
    assert "// ----- IR after tile-flash -----" in text
    assert "// ----- IR after dead-code (unchanged) -----" in text
    assert 'loop "loop(carry=3)"' in text

    stream = io.StringIO()
    passes.PassManager(print_changes=True, stream=stream).run(graph)
    assert "dead-code" not in stream.getvalue() and "tile-flash" in stream.getvalue()

    stream = io.StringIO()
    passes.PassManager(print_diff=True, stream=stream).run(graph)
    diff = stream.getvalue()
    assert "--- before tile-flash" in diff and "-  %out = flash" in diff and "+" in diff


def test_timing_table_lists_every_pass():
    manager = passes.PassManager()
    manager.run(flash_graph(flash_spec("h", 32, 32)))
    table = manager.timing_table()
    assert table.splitlines()[0].split()[:3] == ["pass", "ms", "share"]
    assert "tile-flash" in table and "dead-code" in table and "total" in table


def test_dead_code_drops_unused_nodes_only():
    graph = tlir.parse_text(
        """graph(%a) -> (%b) {
  %b = elementwise "exp:i->i" (%a)
  %unused = elementwise "neg:i->i" (%a)
}"""
    )
    graph.declared_outputs = [1]
    result = passes.DeadCode().run(graph)
    assert [node.spec for node in result.nodes] == ["exp:i->i"]
    assert passes.DeadCode().run(result) is result


def test_pattern_that_never_converges_raises():
    @dataclass(frozen=True)
    class Forever:
        name: ClassVar[str] = "forever"

        def match(self, node, graph):
            return passes.Replacement((), (node,))

    graph = tlir.parse_text('graph(%a) -> (%b) {\n  %b = elementwise "exp:i->i" (%a)\n}')
    with pytest.raises(tlir.PassError, match=r"pattern 'forever' still matched after 5 rewrites"):
        passes.apply_patterns(graph, [Forever()], max_iterations=5)


def test_pipeline_strings_take_options_as_mlir_writes_them():
    manager = passes.PassManager("tile-flash{block_q=0,block_kv=256},dead-code")
    assert manager.passes[0] == passes.TileFlash(block_q=0, block_kv=256)
    assert manager.pipeline == ["tile-flash", "dead-code"]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "tile-flash{block_z=1}",
            r"pass tile-flash has no option 'block_z'; its options: block_q, block_kv",
        ),
        ("tile-flash{block_q}", r"option 'block_q' of tile-flash needs key=value"),
        ("tile-flash{block_kv=0}", r"block_kv must be an integer >= 1, found 0"),
        ("tile flash", r"expected NAME or NAME\{key=value,...\}, found 'tile flash'"),
    ],
)
def test_bad_pipeline_strings(text, message):
    with pytest.raises(tlir.PassError, match=message):
        passes.parse_pipeline(text)


@pytest.mark.parametrize(
    "pipeline, message",
    [
        (5, r"a pipeline is None, a pipeline string, or a list .* found int"),
        ([5], r"5 is not a pass: a pass has a `name` and a `run\(graph\)`"),
        ("dead-code{name=x}", r"pass dead-code has no option 'name'; its options: none"),
    ],
)
def test_bad_pipelines_are_pass_errors(pipeline, message):
    with pytest.raises(tlir.PassError, match=message):
        passes.PassManager(pipeline)


def test_list_items_may_be_pipeline_strings():
    assert passes.PassManager(["tile-flash{block_q=0},dead-code", ""]).pipeline == [
        "tile-flash",
        "dead-code",
    ]


def test_an_invalid_input_graph_is_not_blamed_on_the_first_pass():
    graph = flash_graph(flash_spec("h", 32, 32))
    graph.add_node(graph.nodes[0])
    with pytest.raises(tlir.PassError, match=r"the input graph does not verify, before any pass"):
        passes.PassManager().run(graph)
