"""The float64 reference interpreter: `run(graph, *arrays)` returns a tuple of numpy arrays.

Every node kind runs here: flash nodes are computed directly (scores, mask, softmax, weighted
sum), loop nodes step by step. It is the independent check that `tile-flash` preserves meaning.
All floating-point data is float64, whatever the graph's casts say: casts only change dtypes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backends.interpreter import Interpreter, check_inputs, softmax, visibility
from tlir import EinsumGraph, EinsumNode, FlashSpec, LoweringError
from tlir.spec import EinsumSpec


def flash_reference(spec: FlashSpec, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> list:
    """Attention computed directly in float64 from the flash spec's semantics, in the layout
    the spec's labels give."""
    q, k, v = (np.transpose(x, spec.permutation(name)) for x, name in zip((q, k, v), "qkv"))
    results = _canonical_attention(spec, q, k, v)
    return [
        np.transpose(x, np.argsort(spec.permutation(name)))
        for x, name in zip(results, ("out", "lse"))
    ]


def _canonical_attention(spec: FlashSpec, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> list:
    """[b,h,q,d], [b,g,k,d], [b,g,k,v] -> [b,h,q,v] (and the lse [b,h,q] with `_lse`)."""
    _, h, sq, d = q.shape
    g, skv = k.shape[1], k.shape[2]
    if h % g:
        raise LoweringError(f"query heads {h} are not a multiple of kv heads {g}")
    group = h // g
    k_heads = np.repeat(k, group, axis=1)
    v_heads = np.repeat(v, group, axis=1)
    scores = np.einsum("bhqd,bhkd->bhqk", q, k_heads) / math.sqrt(d)
    left, right = spec.visible_window()
    left = math.inf if left is None else left
    right = math.inf if right is None else right
    visible = visibility(np, sq, skv, 0, sq, 0, skv, left, right)
    scores = np.where(visible, scores, -np.inf)
    weights = softmax(np, scores, -1)
    out = np.einsum("bhqk,bhkv->bhqv", weights, v_heads)
    if not spec.lse:
        return [out]
    peak = np.max(scores, axis=-1)
    safe = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        lse = np.log(np.sum(np.exp(scores - safe[..., None]), axis=-1)) + safe
    return [out, lse]


class NumpyInterpreter(Interpreter):
    name = "numpy backend"

    def __init__(self) -> None:
        super().__init__(np)

    def float_dtype(self) -> Any:
        return np.float64

    def cast(self, x: np.ndarray, dtype: Any) -> np.ndarray:
        if "float" in str(dtype):  # every floating type runs in float64 here
            return np.asarray(x, dtype=np.float64)
        return np.asarray(x).astype(str(dtype))

    def einsum(self, node: EinsumNode, spec: EinsumSpec, operands: list) -> np.ndarray:
        return np.einsum(spec.text, *operands)

    def flash(self, spec: FlashSpec, operands: list) -> list:
        if spec.dropout > 0:
            raise LoweringError("the numpy backend does not implement flash dropout")
        return flash_reference(spec, *operands[:3])


def _as_float64(x: Any) -> np.ndarray:
    if "key<" in str(getattr(x, "dtype", "")):
        # A typed JAX PRNG key (so JAX is loaded already): its raw data seeds numpy's masks.
        import jax

        x = jax.random.key_data(x)
    array = np.asarray(x)
    if array.dtype.kind in "fc" or array.dtype.name in ("bfloat16",):
        return array.astype(np.float64)
    return array


def run(graph: EinsumGraph, *arrays: Any) -> tuple[np.ndarray, ...]:
    """Run `graph` on `arrays` (one per graph input, in order) in float64."""
    graph.validate()
    inputs = [_as_float64(a) for a in arrays]
    check_inputs(graph, inputs)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        results = NumpyInterpreter().run_graph(graph, inputs)
    return tuple(np.asarray(r) for r in results)
