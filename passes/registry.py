"""The registry of passes by kebab-case name; a miss lists the valid names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from passes.dead_code import DeadCode
from passes.tile_flash import TileFlash
from tlir import EinsumGraph, PassError


class Pass(Protocol):
    name: str

    def run(self, graph: EinsumGraph) -> EinsumGraph: ...


PASSES: dict[str, Callable[[], Pass]] = {
    TileFlash.name: TileFlash,
    DeadCode.name: DeadCode,
}

# After the default pipeline no flash node is left.
DEFAULT_PIPELINE = ("tile-flash", "dead-code")


def available() -> list[str]:
    return sorted(PASSES)


def make_pass(name: str) -> Pass:
    try:
        return PASSES[name]()
    except KeyError:
        raise PassError(
            f"unknown pass {name!r}; available passes: {', '.join(available())}"
        ) from None
