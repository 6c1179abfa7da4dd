"""Pattern-matching rewrites over the tlir IR and the PassManager that runs them.

`passes` imports `tlir` and never JAX. Passes are small frozen dataclasses with a kebab-case
`name` and one `run(graph) -> graph` that never edits its argument.
"""

from __future__ import annotations

from passes.dead_code import DeadCode
from passes.manager import PassManager, PassRecord
from passes.registry import DEFAULT_PIPELINE, PASSES, available, make_pass, parse_pipeline
from passes.rewrite import NodeBuilder, Replacement, apply_patterns
from passes.tile_flash import FlashToLoop, TileFlash

__all__ = [
    "DEFAULT_PIPELINE",
    "PASSES",
    "DeadCode",
    "FlashToLoop",
    "NodeBuilder",
    "PassManager",
    "PassRecord",
    "Replacement",
    "TileFlash",
    "apply_patterns",
    "available",
    "make_pass",
    "parse_pipeline",
]
