"""The registry of passes by kebab-case name, and the pipeline text that names them.

A pipeline is written as MLIR writes one: comma-separated pass names, each with optional
`{key=value,...}` options, e.g. `tile-flash{block_q=0,block_kv=256},dead-code`. A miss lists the
valid names or options.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from passes.dead_code import DeadCode
from passes.tile_flash import TileFlash
from tlir import EinsumGraph, PassError


class Pass(Protocol):
    name: str

    def run(self, graph: EinsumGraph) -> EinsumGraph: ...


PASSES: dict[str, Callable[..., Pass]] = {
    TileFlash.name: TileFlash,
    DeadCode.name: DeadCode,
}

# After the default pipeline no flash node is left.
DEFAULT_PIPELINE = ("tile-flash", "dead-code")

_ITEM = re.compile(r"([A-Za-z0-9_-]+)(?:\{(.*)\})?", re.DOTALL)


def available() -> list[str]:
    return sorted(PASSES)


def make_pass(name: str, /, **options: Any) -> Pass:
    """The pass called `name`, with `options` as its fields."""
    try:
        factory = PASSES[name]
    except KeyError:
        raise PassError(
            f"unknown pass {name!r}; available passes: {', '.join(available())}"
        ) from None
    valid = (
        [f.name for f in dataclasses.fields(factory)] if dataclasses.is_dataclass(factory) else []
    )
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise PassError(
            f"pass {name} has no option {unknown[0]!r}; its options: {', '.join(valid) or 'none'}"
        )
    return factory(**options)


def parse_pipeline(text: str) -> list[Pass]:
    """`a,b{key=value,...}` -> pass objects. Values are integers, `none`, or words."""
    result = []
    for item in _split_items(text):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise PassError(f"pipeline: expected NAME or NAME{{key=value,...}}, found {item!r}")
        name, raw_options = match.groups()
        options = {}
        for raw in filter(None, (o.strip() for o in (raw_options or "").split(","))):
            key, equals, value = raw.partition("=")
            if not equals:
                raise PassError(f"pipeline: option {raw!r} of {name} needs key=value")
            options[key.strip()] = _option_value(value.strip())
        result.append(make_pass(name, **options))
    return result


def _split_items(text: str) -> list[str]:
    """Split at the commas that are not inside `{...}`."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [item.strip() for item in items if item.strip()]


def _option_value(text: str) -> int | str | None:
    if text in ("none", "None"):
        return None
    try:
        return int(text)
    except ValueError:
        return text


def describe_pipeline(pipeline: Sequence[Pass]) -> str:
    """`tile-flash{block_q=0,block_kv=1024},dead-code`: names with the options that are set."""
    items = []
    for pass_ in pipeline:
        fields = dataclasses.fields(pass_) if dataclasses.is_dataclass(pass_) else ()
        values = [
            (f.name, getattr(pass_, f.name)) for f in fields if getattr(pass_, f.name) != f.default
        ]
        options = [f"{name}={value}" for name, value in values]
        items.append(pass_.name + (f"{{{','.join(options)}}}" if options else ""))
    return ",".join(items) or "no passes"
