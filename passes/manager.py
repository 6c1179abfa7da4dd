"""PassManager: run a pipeline of passes, verify after each, and keep a trace of every step.

Like MLIR's pass manager with `--print-ir-after-all` and torch.fx's PassManager: a failing pass
is re-raised as `PassError` naming it and the passes that ran before it.
"""

from __future__ import annotations

import difflib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from passes.registry import DEFAULT_PIPELINE, Pass, make_pass, parse_pipeline
from tlir import EinsumGraph, PassError, TlirError


@dataclass(frozen=True)
class PassRecord:
    """One pass run: its name, the graph after it, its wall time, and whether it changed the IR."""

    name: str
    graph: EinsumGraph
    seconds: float
    changed: bool


def _parse_pipeline(pipeline: str | Sequence[str | Pass] | None) -> list[Pass]:
    if pipeline is None:
        return [make_pass(name) for name in DEFAULT_PIPELINE]
    if isinstance(pipeline, str):
        return parse_pipeline(pipeline)
    if not isinstance(pipeline, Sequence):
        raise PassError(
            "a pipeline is None, a pipeline string, or a list of pass names and pass objects; "
            f"found {type(pipeline).__name__}"
        )
    passes: list[Pass] = []
    for item in pipeline:
        if isinstance(item, str):
            passes += parse_pipeline(item)
        elif callable(getattr(item, "run", None)) and isinstance(getattr(item, "name", None), str):
            passes.append(item)
        else:
            raise PassError(f"{item!r} is not a pass: a pass has a `name` and a `run(graph)`")
    return passes


class PassManager:
    """`PassManager(pipeline=None, print_after_all=False)`; `run(graph)` returns a new graph.

    `pipeline`: None (the default pipeline, after which no flash node is left), a list of pass
    names or pass objects, or a pipeline string such as `tile-flash{block_q=0},dead-code`.
    `print_changes` prints only passes that changed the graph; `print_diff` prints a unified
    diff instead of the whole IR.
    """

    def __init__(
        self,
        pipeline: str | Sequence[str | Pass] | None = None,
        print_after_all: bool = False,
        *,
        print_changes: bool = False,
        print_diff: bool = False,
        stream: TextIO | None = None,
        verify: Callable[[EinsumGraph], None] | None = None,
    ) -> None:
        self.passes = _parse_pipeline(pipeline)
        self.print_after_all = print_after_all
        self.print_changes = print_changes
        self.print_diff = print_diff
        self.stream = stream
        self.verify = verify or EinsumGraph.validate
        self.trace: list[PassRecord] = []

    @property
    def pipeline(self) -> list[str]:
        return [p.name for p in self.passes]

    def run(self, graph: EinsumGraph) -> EinsumGraph:
        self.trace = []
        try:
            self.verify(graph)
        except TlirError as error:
            raise PassError(
                f"the input graph does not verify, before any pass ran: {error}"
            ) from None
        current = graph
        for index, pass_ in enumerate(self.passes):
            before_text = str(current)
            start = time.perf_counter()
            try:
                after = pass_.run(current)
                self.verify(after)
            except TlirError as error:
                ran = self.pipeline[:index] or ["none"]
                raise PassError(
                    f"pass {pass_.name!r} failed (passes run before it: {', '.join(ran)}): {error}"
                ) from None
            seconds = time.perf_counter() - start
            after_text = str(after)
            changed = after_text != before_text
            self.trace.append(PassRecord(pass_.name, after, seconds, changed))
            self._print(pass_.name, before_text, after_text, changed)
            current = after
        return current

    def _print(self, name: str, before: str, after: str, changed: bool) -> None:
        if not (self.print_after_all or self.print_changes or self.print_diff):
            return
        if (self.print_changes or self.print_diff) and not changed:
            return
        stream = self.stream or sys.stdout
        print(f"// ----- IR after {name}{'' if changed else ' (unchanged)'} -----", file=stream)
        if self.print_diff:
            diff = difflib.unified_diff(
                before.splitlines(),
                after.splitlines(),
                f"before {name}",
                f"after {name}",
                lineterm="",
            )
            print("\n".join(diff), file=stream)
        else:
            print(after, file=stream)

    def timing_table(self) -> str:
        """A per-pass timing table, like MLIR's -mlir-timing."""
        total = sum(r.seconds for r in self.trace) or 1e-12
        lines = [f"{'pass':<16} {'ms':>9} {'share':>7}  changed"]
        for r in self.trace:
            lines.append(
                f"{r.name:<16} {r.seconds * 1e3:>9.3f} {r.seconds / total:>6.1%}  "
                f"{'yes' if r.changed else 'no'}"
            )
        lines.append(f"{'total':<16} {total * 1e3:>9.3f}")
        return "\n".join(lines)
