"""Naive attention in JAX (einsum, softmax, einsum): the baseline `tlir demo` compares against.

Inputs are the seed's [b, s, d_model] Q, K, V; heads are split as the seed's builders split them
(d_model = heads * d, head-major). The causal mask is bottom-right aligned, as the flash spec's.
JAX is imported inside the function, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from typing import Any

Array = Any


def naive_attention(q: Array, k: Array, v: Array, n_heads: int, causal: bool) -> Array:
    """softmax(q k^T / sqrt(d), masked) v over all keys at once: O(s^2) scores in memory."""
    import jax
    import jax.numpy as jnp

    b, sq, d_model = q.shape
    skv = k.shape[1]
    d = d_model // n_heads
    q = jnp.reshape(q, (b, sq, n_heads, d))
    k = jnp.reshape(k, (b, skv, n_heads, d))
    v = jnp.reshape(v, (b, skv, n_heads, d))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
    if causal:
        query = jnp.arange(sq)[:, None]
        key = jnp.arange(skv)[None, :]
        scores = jnp.where(key <= query + (skv - sq), scores, -jnp.inf)
    weights = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bhqk,bkhv->bqhv", weights, v)
    return jnp.reshape(out, (b, sq, d_model))
