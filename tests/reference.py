"""Independent float64 attention references for the tests (plain numpy, written from the spec).

Legend: b batch, h query heads, g kv heads, q/k positions, d head dim, v value dim.
"""

from __future__ import annotations

import math

import numpy as np


def visible_mask(sq: int, skv: int, causal: bool, window: tuple[int, int] | None) -> np.ndarray:
    """[sq, skv] booleans from docs/semantics.md, one query at a time."""
    mask = np.zeros((sq, skv), dtype=bool)
    offset = skv - sq
    for i in range(sq):
        for j in range(skv):
            ok = True
            if causal:
                ok = ok and j <= i + offset
            if window is not None:
                left, right = window
                if causal:
                    right = 0
                ok = ok and i + offset - left <= j <= i + offset + right
            mask[i, j] = ok
    return mask


def attention64(q, k, v, causal=False, window=None):
    """Returns (out [b,h,q,v], lse [b,h,q]) in float64; rows that see nothing give 0 and -inf."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    b, h, sq, d = q.shape
    g, skv = k.shape[1], k.shape[2]
    mask = visible_mask(sq, skv, causal, window)
    out = np.zeros((b, h, sq, v.shape[-1]))
    lse = np.full((b, h, sq), -np.inf)
    for head in range(h):
        kv = head // (h // g)
        s = np.einsum("bqd,bkd->bqk", q[:, head], k[:, kv]) / math.sqrt(d)
        for i in range(sq):
            cols = np.nonzero(mask[i])[0]
            if cols.size == 0:
                continue
            row = s[:, i, cols]
            peak = row.max(axis=-1, keepdims=True)
            weights = np.exp(row - peak)
            total = weights.sum(axis=-1, keepdims=True)
            out[:, head, i] = np.einsum("bk,bkv->bv", weights / total, v[:, kv, cols])
            lse[:, head, i] = (np.log(total) + peak)[:, 0]
    return out, lse


def naive_jax(q, k, v, causal=False, window=None):
    """Naive attention in JAX (einsum, softmax, einsum) in the inputs' dtype, K/V repeated."""
    import jax
    import jax.numpy as jnp

    _, h, sq, d = q.shape
    g, skv = k.shape[1], k.shape[2]
    k = jnp.repeat(k, h // g, axis=1)
    v = jnp.repeat(v, h // g, axis=1)
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k) / jnp.asarray(math.sqrt(d), q.dtype)
    mask = jnp.asarray(visible_mask(sq, skv, causal, window))
    s = jnp.where(mask, s, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1)
    p = jnp.where(mask.any(-1)[:, None], p, 0).astype(v.dtype)
    return jnp.einsum("bhqk,bhkv->bhqv", p, v)


def flash_graph(spec: str):
    """A graph with inputs q, k, v (and key with dropout) and one flash node."""
    import tlir

    parsed = tlir.parse_spec(spec)
    graph = tlir.EinsumGraph()
    operands = [graph.add_tensor(name) for name in ("q", "k", "v", "key")[: parsed.n_operands]]
    results = [graph.add_tensor(name) for name in ("out", "lse")[: parsed.n_results]]
    graph.add_node(tlir.EinsumNode(spec, operands, results))
    return graph


def flash_spec(g_label="h", bq=16, bk=16, causal=False, window=None, lse=False, dropout=0.0):
    import tlir

    return tlir.format_flash(
        tuple("bhqd"),
        ("b", g_label, "k", "d"),
        ("b", g_label, "k", "v"),
        tuple("bhqv"),
        bq,
        bk,
        causal=causal,
        window=window,
        lse=lse,
        dropout=dropout,
    )


def attention64_vjp(q, k, v, d_out, causal=False, window=None):
    """(dq, dk, dv) of attention64 for the output cotangent d_out, in float64 (full matrices)."""
    q, k, v, d_out = (np.asarray(x, dtype=np.float64) for x in (q, k, v, d_out))
    _, h, sq, d = q.shape
    g, skv = k.shape[1], k.shape[2]
    mask = visible_mask(sq, skv, causal, window)
    scale = 1 / math.sqrt(d)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for head in range(h):
        kv = head // (h // g)
        s = np.where(mask, np.einsum("bqd,bkd->bqk", q[:, head], k[:, kv]) * scale, -np.inf)
        peak = np.max(s, axis=-1, keepdims=True)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        e = np.exp(s - peak)
        total = e.sum(-1, keepdims=True)
        p = np.where(total > 0, e / np.where(total > 0, total, 1), 0.0)
        dv[:, kv] += np.einsum("bqk,bqv->bkv", p, d_out[:, head])
        dp = np.einsum("bqv,bkv->bqk", d_out[:, head], v[:, kv])
        ds = p * (dp - (dp * p).sum(-1, keepdims=True))
        dq[:, head] = np.einsum("bqk,bkd->bqd", ds, k[:, kv]) * scale
        dk[:, kv] += np.einsum("bqk,bqd->bkd", ds, q[:, head]) * scale
    return dq, dk, dv
