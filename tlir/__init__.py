"""tlir: an einsum-graph IR with a tiling compiler for flash attention.

The IR (`EinsumGraph`, `EinsumNode`), its one spec language (`parse_spec`), shape inference
(`infer_shapes`), the text form (`str(graph)`, `parse_text`), JSON (`to_json`, `from_json`) and the
seed's attention builders. `tlir` never imports JAX: building, printing and rewriting graphs works
without it.
"""

from __future__ import annotations

from tlir.attention import (
    FlashAttention,
    FlashAttentionConfig,
    FlashAttentionPreset,
    FlashAttentionStats,
    FlashAttentionV2Config,
    MultiHeadAttention,
)
from tlir.errors import (
    ConfigError,
    GraphError,
    LoweringError,
    PassError,
    SpecError,
    SpecWarning,
    TlirError,
)
from tlir.graph import EinsumGraph, EinsumNode
from tlir.serialize import graph_to_rust_json
from tlir.shapes import infer_shapes
from tlir.spec import (
    EinsumSpec,
    FlashSpec,
    LoopSpec,
    OpSpec,
    ReshapeSpec,
    format_flash,
    parse_spec,
)
from tlir.text import format_graph, parse_text

__all__ = [
    "ConfigError",
    "EinsumGraph",
    "EinsumNode",
    "EinsumSpec",
    "FlashAttention",
    "FlashAttentionConfig",
    "FlashAttentionPreset",
    "FlashAttentionStats",
    "FlashAttentionV2Config",
    "FlashSpec",
    "GraphError",
    "LoopSpec",
    "LoweringError",
    "MultiHeadAttention",
    "OpSpec",
    "PassError",
    "ReshapeSpec",
    "SpecError",
    "SpecWarning",
    "TlirError",
    "format_flash",
    "format_graph",
    "graph_to_rust_json",
    "infer_shapes",
    "parse_spec",
    "parse_text",
]
