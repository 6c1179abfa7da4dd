"""`tlir compile --explain`: for each flash node, whether tile-flash rewrites it, and why.

The answer comes from the node's `FlashSpec` fields and from running the pass's own pattern
(`FlashToLoop.match`) on the node, so a refusal is reported in the pass's words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from passes import FlashToLoop, TileFlash
from passes.registry import Pass
from tlir import EinsumGraph, EinsumNode, FlashSpec, OpSpec, TlirError

Shape = tuple[int, ...]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def describe_fields(spec: FlashSpec) -> str:
    terms = f"q={''.join(spec.q)} k={''.join(spec.k)} v={''.join(spec.v)} out={''.join(spec.out)}"
    window = "none" if spec.window is None else f"{spec.window[0]}x{spec.window[1]}"
    return (
        f"{terms} Bq={spec.block_q} Bc={spec.block_kv} causal={_yes(spec.causal)} "
        f"window={window} dropout={spec.dropout:g} lse={_yes(spec.lse)} "
        f"grouped={_yes(spec.grouped)}"
    )


def _tiles(size: int, tile: int) -> int:
    return -(-size // tile)


def _schedule(
    spec: FlashSpec,
    tile_flash: TileFlash,
    operand_shapes: Sequence[Shape] | None,
) -> list[str]:
    """How the rewrite tiles this node: loops, tiles, masks, and trip counts when shapes are known."""
    block_q = spec.block_q if tile_flash.block_q is None else tile_flash.block_q
    block_kv = tile_flash.block_kv or spec.block_kv
    if block_q == 0:
        loops = f"one key-tile loop (Bc={block_kv}) over all query rows at once"
    else:
        loops = f"a query-tile loop (Bq={block_q}) around a key-tile loop (Bc={block_kv})"
    lines = [
        (
            f"rewritten by tile-flash into {loops}, carrying (acc, max, sum) in float32 "
            "(online softmax, FlashAttention-2 Alg. 1); out = acc / sum after the loop"
        )
    ]
    masks = []
    left, right = spec.visible_window()
    if spec.causal:
        masks.append("causal (keys after the diagonal are masked)")
    if spec.window is not None:
        masks.append(f"window: left {left}, right {right} keys around the diagonal")
    if operand_shapes is None:
        masks.append(f"the padded tail of the keys, if Skv is not a multiple of {block_kv}")
    elif operand_shapes[1][2] % block_kv:
        masks.append("the padded tail of the keys")
    lines.append("masks: " + ("; ".join(masks) or "none (every key is visible)"))
    if spec.grouped:
        lines.append("grouped-query: q is reshaped to [b,g,r,q,d]; K and V are never repeated")
    if spec.lse:
        lines.append("also writes the row logsumexp (the second result)")
    if operand_shapes is not None:
        sq, skv = operand_shapes[0][2], operand_shapes[1][2]
        kv_tiles = _tiles(skv, block_kv)
        trips = f"Skv={skv}: {kv_tiles} key tile(s)"
        if skv % block_kv:
            trips += f" (K, V padded {skv} -> {kv_tiles * block_kv}, the tail masked)"
        if block_q:
            trips = f"Sq={sq}: {_tiles(sq, block_q)} query tile(s); " + trips
        lines.append(trips)
    return lines


def _verdict(
    index: int,
    node: EinsumNode,
    graph: EinsumGraph,
    pipeline: Sequence[Pass],
    shapes: Mapping[int, Shape] | None,
) -> list[str]:
    spec = node.parsed
    assert isinstance(spec, FlashSpec)
    result = graph.tensors[node.outputs[0]]
    lines = [f"node {index} flash {spec.text!r} -> %{result}", f"  fields: {describe_fields(spec)}"]
    tile_flash = next((p for p in pipeline if isinstance(p, TileFlash)), None)
    if tile_flash is None:
        names = ", ".join(p.name for p in pipeline) or "empty"
        lines.append(f"  not rewritten: the pipeline ({names}) does not run tile-flash")
        return lines
    try:
        FlashToLoop(tile_flash.block_q, tile_flash.block_kv).match(node, graph)
    except TlirError as error:
        lines.append(f"  refused by tile-flash: {error}")
        return lines
    operand_shapes = None
    if shapes is not None and all(t in shapes for t in node.inputs[:2]):
        operand_shapes = [shapes[t] for t in node.inputs[:2]]
    lines += ["  " + line for line in _schedule(spec, tile_flash, operand_shapes)]
    return lines


def _count(graph: EinsumGraph, kind: str) -> int:
    total = 0
    for node in graph.nodes:
        total += node.kind == kind
        if node.body is not None:
            total += _count(node.body, kind)
    return total


def _after(graph: EinsumGraph, pipeline: Sequence[Pass], lowered: EinsumGraph) -> str:
    names = ", ".join(p.name for p in pipeline) or "no passes"
    before, after = _count(graph, "flash"), _count(lowered, "flash")
    loops = _count(lowered, "loop")
    return (
        f"after the pipeline ({names}): {before} flash node(s) before, {after} left; "
        f"{loops} loop node(s) in all (nested ones counted)"
    )


def explain(
    graph: EinsumGraph,
    pipeline: Sequence[Pass],
    shapes: Mapping[int, Shape] | None = None,
    lowered: EinsumGraph | None = None,
) -> str:
    """A report, one block per flash node, then a line on the nodes tile-flash does not match;
    with `lowered` (the pipeline's result), a last line that checks what the pipeline did."""
    lines = ["// ----- explain: tile-flash -----"]
    others: Counter[str] = Counter()
    softmax = []
    for index, node in enumerate(graph.nodes):
        if node.kind == "flash":
            lines += _verdict(index, node, graph, pipeline, shapes)
            continue
        others[node.kind or "?"] += 1
        if isinstance(node.parsed, OpSpec) and node.parsed.op == "softmax":
            softmax.append(index)
    if len(lines) == 1:
        lines.append("no flash node: tile-flash rewrites only flash nodes, so it changes nothing")
    if others:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(others.items()))
        lines.append(f"not matched (not flash nodes): {counts}")
    for index in softmax:
        lines.append(
            f"node {index} {graph.nodes[index].spec!r} is a softmax of unfused attention: "
            "tile-flash matches only fused flash nodes (build the graph with FlashAttention)"
        )
    if lowered is not None:
        lines.append(_after(graph, pipeline, lowered))
    return "\n".join(lines)
