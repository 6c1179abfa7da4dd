"""`tlir compile --explain`: for each flash node, whether tile-flash rewrites it, how, and why.

The answer comes from the node's `FlashSpec` fields and from running the pass's own pattern
(`FlashToLoop.match`) on the node, so a refusal is reported in the pass's words. Trip counts
with block skipping come from the same `tile_range` that the backends run.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from backends.interpreter import tile_range
from passes import FlashToLoop, TileFlash
from passes.registry import Pass, describe_pipeline
from tlir import EinsumGraph, EinsumNode, FlashSpec, OpSpec, TlirError
from tlir.shapes import tile_size
from tlir.walk import walk

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


def _visited_pairs(sq: int, skv: int, bq: int, bk: int, spec: FlashSpec) -> int:
    """(query tile, key tile) pairs that the forward's key loops visit, with block skipping;
    `bq` and `bk` are the tile sizes after `tile_size`."""
    left, right = (math.inf if side is None else side for side in spec.visible_window())
    total = 0
    for i in range(_tiles(sq, bq)):
        bounds = [
            int(tile_range(np, name, sq, skv, i, bq, bk, left, right))
            for name in ("first_kv_tile", "end_kv_tile")
        ]
        total += max(bounds[1] - bounds[0], 0)
    return total


def _lengths(spec: FlashSpec, operand_shapes: Sequence[Shape]) -> tuple[int, int]:
    """(Sq, Skv) from the shapes of q and k, wherever the spec puts the positions."""
    q_shape, k_shape = operand_shapes[:2]
    return q_shape[spec.q.index(spec.roles.query)], k_shape[spec.k.index(spec.roles.key)]


def _schedule(
    spec: FlashSpec,
    tile_flash: TileFlash,
    operand_shapes: Sequence[Shape] | None,
    key: str | None,
) -> list[str]:
    """How the rewrite tiles this node: loops, tiles, masks, skipping, backward and dropout,
    with trip counts when shapes are known."""
    block_q = spec.block_q if tile_flash.block_q is None else tile_flash.block_q
    block_kv = tile_flash.block_kv or spec.block_kv
    bwd_q = block_q if tile_flash.bwd_block_q is None else tile_flash.bwd_block_q
    bwd_kv = tile_flash.bwd_block_kv or block_kv
    if block_q == 0:
        loops = f"key-tile loops (Bc={block_kv}) over all query rows at once"
    else:
        loops = f"a query-tile loop (Bq={block_q}) around key-tile loops (Bc={block_kv})"
    if bwd_q == 0:
        back = f"a key-tile loop (Bc={bwd_kv}) over all query rows at once"
    else:
        back = f"a key-tile loop (Bc={bwd_kv}) around a query-tile loop (Bq={bwd_q})"
    lines = [
        (
            "rewritten by tile-flash into one custom_vjp node: its body is the tiled forward, "
            "its grad body the tiled backward (what jax.grad runs)"
        ),
        (
            f"forward: {loops}, carrying (acc, max, sum) in float32 (online softmax, "
            "FlashAttention-2 Alg. 1); out = acc / sum after the loop; the row logsumexp is "
            "kept for the backward"
        ),
    ]
    lines.append(
        "key tiles that every query row sees whole run in a loop without a mask; the tiles a "
        "mask cuts (the diagonal, a window's edges, the padded tail) in their own, masked"
    )
    if block_q != 0:
        labels = "bgr" if spec.grouped else "bh"
        lines.append(
            f"the query-tile loop is parallel={labels}: its iterations are independent, so on a "
            "GPU backends.jax runs it as one Pallas kernel, a program per (query tile, head)"
        )
    masks = []
    left, right = spec.visible_window()
    if spec.causal:
        masks.append("causal (keys after the diagonal are masked)")
    if spec.window is not None:
        masks.append(f"window: left {left}, right {right} keys around the diagonal")
    if operand_shapes is None:
        masks.append(f"the padded tail of the keys, if Skv is not a multiple of {block_kv}")
    else:
        sq, skv = _lengths(spec, operand_shapes)
        if skv % tile_size(block_kv, skv):
            masks.append("the padded tail of the keys")
        if sq % tile_size(block_q, sq):
            masks.append("the padded tail of the queries")
    lines.append("masks: " + ("; ".join(masks) or "none (every key is visible)"))
    if left is None and right is None:
        lines.append("block skipping: none (every query tile sees every key tile)")
    else:
        lines.append(
            "block skipping: the key loop of query tile i runs over first_kv_tile..end_kv_tile "
            "only (the key tiles it can see); in the backward, the query loop of key tile j "
            "over first_q_tile..end_q_tile"
        )
    lines.append(
        f"backward (grad body): {back}, recomputing the scores from q, k and the saved "
        "logsumexp (FlashAttention-2 Alg. 2): O(N) memory, no score matrix kept"
    )
    if spec.dropout > 0:
        operand = f"%{key}" if key is not None else "the dropout_key operand"
        lines.append(
            f"dropout p={spec.dropout:g}: {operand} (a PRNG key: jax.random.key or raw "
            "uint32[2]) seeds one keep mask per (query tile, key tile), dropout_keep(key, i, j); "
            f"kept probabilities are scaled by 1/(1-p); the backward redraws the same masks, "
            "and the key gets no cotangent"
        )
    if spec.grouped:
        lines.append("grouped-query: q is reshaped to [b,g,r,q,d]; K and V are never repeated")
    if not spec.canonical_layout:
        layout = ",".join("".join(spec.roles.canonical(name)) for name in ("q", "k", "v", "out"))
        lines.append(f"layout: q, k, v are transposed to {layout} around the loops, and back")
    if spec.lse:
        lines.append("also writes the row logsumexp (the second result)")
    if operand_shapes is not None:
        sq, skv = _lengths(spec, operand_shapes)
        bq, bk = tile_size(block_q, sq), tile_size(block_kv, skv)  # never longer than the axis
        kv_tiles, q_tiles = _tiles(skv, bk), _tiles(sq, bq)
        trips = f"Skv={skv}: {kv_tiles} key tile(s)"
        if bk < block_kv:
            trips += f" (one of {skv} keys: Bc={block_kv} is longer)"
        if skv % bk:
            trips += f" (K, V padded {skv} -> {kv_tiles * bk}, the tail masked)"
        if block_q:
            cut = f" (one of {sq} rows: Bq={block_q} is longer)" if bq < block_q else ""
            trips = f"Sq={sq}: {q_tiles} query tile(s){cut}; " + trips
        lines.append(trips)
        if left is not None or right is not None:
            visited = _visited_pairs(sq, skv, bq, bk, spec)
            lines.append(
                f"the forward visits {visited} of {q_tiles * kv_tiles} (query tile, key tile) "
                "pair(s)"
            )
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
        names = describe_pipeline(pipeline)
        lines.append(f"  not rewritten: the pipeline ({names}) does not run tile-flash")
        return lines
    try:
        FlashToLoop(tile_flash).match(node, graph)
    except TlirError as error:
        lines.append(f"  refused by tile-flash: {error}")
        return lines
    operand_shapes = None
    if shapes is not None and all(t in shapes for t in node.inputs[:2]):
        operand_shapes = [shapes[t] for t in node.inputs[:2]]
    key_at = spec.operand("dropout_key")
    key = graph.tensors[node.inputs[key_at]] if key_at is not None else None
    lines += ["  " + line for line in _schedule(spec, tile_flash, operand_shapes, key)]
    return lines


def _count(graph: EinsumGraph, kind: str) -> int:
    """Nodes of `kind` in `graph`, in loop bodies and custom_vjp bodies and grad bodies too."""
    return sum(visit.node.kind == kind for visit in walk(graph))


def _after(graph: EinsumGraph, pipeline: Sequence[Pass], lowered: EinsumGraph) -> str:
    names = describe_pipeline(pipeline)
    before, after = _count(graph, "flash"), _count(lowered, "flash")
    regions, loops = _count(lowered, "custom_vjp"), _count(lowered, "loop")
    return (
        f"after the pipeline ({names}): {before} flash node(s) before, {after} left; "
        f"{regions} custom_vjp node(s), {loops} loop node(s) in all (nested ones, forward and "
        "backward, counted)"
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
