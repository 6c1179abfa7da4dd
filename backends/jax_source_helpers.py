"""The helper functions that `backends/jax_source.py` prints at the top of a rendered module.

Each is the source text of one small function, written to match `backends/interpreter.py` and
`backends/jax.py`: tiles, the attention mask, tile bounds, dropout masks, masked softmax.
`HELPER_NEEDS` lists the helpers a helper calls; `HELPERS_USING_JAX` those that need `jax`.
"""

from __future__ import annotations

HELPERS: dict[str, str] = {
    "tile_size": '''
def tile_size(size, extent):
    """A tile is never larger than the axis it tiles; size 0 means the whole axis."""
    return max(1, min(size, extent) if size else extent)
''',
    "pad_tiles": '''
def pad_tiles(x, axis, size):
    """x padded with zeros along axis to whole tiles of tile_size(size, its extent)."""
    extra = -x.shape[axis] % tile_size(size, x.shape[axis])
    if extra == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths)
''',
    "tile": '''
def tile(x, j, size, axis):
    """Tile j of x along axis, tile_size(size, its extent) long; rows past the end read as 0."""
    size = tile_size(size, x.shape[axis])
    return lax.dynamic_slice_in_dim(pad_tiles(x, axis, size), j * size, size, axis)
''',
    "put_tile": '''
def put_tile(x, tile_, i, axis):
    """x with tile i along axis (tiles as long as tile_) replaced by tile_."""
    size = tile_.shape[axis]
    return lax.dynamic_update_slice_in_dim(x, tile_.astype(x.dtype), i * size, axis)
''',
    "attn_mask": '''
def attn_mask(sq, skv, i, j, bq, bk, left, right):
    """[bq, bk] after tile_size: query tile i sees key tile j (bottom-right aligned diagonal)."""
    bq, bk = tile_size(bq, sq), tile_size(bk, skv)
    if math.isinf(left) and math.isinf(right) and sq % bq == 0 and skv % bk == 0:
        return jnp.ones((bq, bk), dtype=bool)  # every query and key exists: folded away
    query = i * bq + jnp.arange(bq)[:, None]
    key = j * bk + jnp.arange(bk)[None, :]
    diagonal = query + (skv - sq)
    visible = (key < skv) & (query < sq)
    if not math.isinf(left):
        visible = visible & (key >= diagonal - min(int(left), sq + skv))
    if not math.isinf(right):
        visible = visible & (key <= diagonal + min(int(right), sq + skv))
    return visible
''',
    "first_kv_tile": '''
def first_kv_tile(sq, skv, i, bq, bk, left):
    """The first key tile that query tile i sees; earlier ones are skipped."""
    bq, bk = tile_size(bq, sq), tile_size(bk, skv)
    left = min(left, sq + skv)  # wider means the same, and keeps int32 from overflowing
    return jnp.maximum(i * bq + (skv - sq) - left, 0) // bk
''',
    "end_kv_tile": '''
def end_kv_tile(sq, skv, i, bq, bk, right):
    """One past the last key tile that query tile i sees."""
    bq, bk = tile_size(bq, sq), tile_size(bk, skv)
    right = min(right, sq + skv)
    last_row = jnp.minimum(i * bq + bq, sq) - 1
    return jnp.minimum(last_row + (skv - sq) + right, skv - 1) // bk + 1
''',
    "first_q_tile": '''
def first_q_tile(sq, skv, j, bq, bk, right):
    """The first query tile that sees key tile j; earlier ones are skipped."""
    bq, bk = tile_size(bq, sq), tile_size(bk, skv)
    right = min(right, sq + skv)
    return jnp.maximum(j * bk - (skv - sq) - right, 0) // bq
''',
    "end_q_tile": '''
def end_q_tile(sq, skv, j, bq, bk, left):
    """One past the last query tile that sees key tile j."""
    bq, bk = tile_size(bq, sq), tile_size(bk, skv)
    left = min(left, sq + skv)
    last_key = jnp.minimum(j * bk + bk, skv) - 1
    return jnp.minimum(last_key - (skv - sq) + left, sq - 1) // bq + 1
''',
    "full_kv_tiles": '''
def full_kv_tiles(sq, skv, i, bq, bk, left, right):
    """(lo, hi): the key tiles that every row of query tile i sees whole (no mask needed),
    clamped into the visible ones."""
    bq, bk = tile_size(bq, sq), tile_size(bk, skv)
    offset = skv - sq
    lo = 0 if math.isinf(left) else first_kv_tile(sq, skv, i, bq, bk, left)
    hi = -(-skv // bk) if math.isinf(right) else end_kv_tile(sq, skv, i, bq, bk, right)
    hi = jnp.maximum(hi, lo)  # a tile that sees no key has hi < lo
    first = lo
    if not math.isinf(left):
        last_row = jnp.minimum(i * bq + bq, sq) - 1
        left = min(int(left), sq + skv)
        first = jnp.clip(-(-(last_row + offset - left) // bk), lo, hi)
    seen = skv // bk
    if not math.isinf(right):
        right = min(int(right), sq + skv)
        seen = jnp.minimum((i * bq + offset + right + 1) // bk, seen)
    return first, jnp.clip(seen, first, hi)
''',
    "dropout_keep": '''
def dropout_keep(key, i, j, rate, shape):
    """Keep mask of tile (i, j), True with probability 1 - rate; a raw uint32[2] key is wrapped."""
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    tile_key = jax.random.fold_in(jax.random.fold_in(key, i), j)
    return jax.random.bernoulli(tile_key, 1.0 - rate, shape)
''',
    "cotangent": '''
def cotangent(x, g):
    """g, or None where x is not floating point (a PRNG key): such operands have no cotangent."""
    return g if jnp.issubdtype(x.dtype, jnp.inexact) else None
''',
    "softmax": '''
def softmax(x, axis):
    """Softmax whose fully masked (-inf) rows are 0, not NaN."""
    peak = jnp.max(x, axis=axis, keepdims=True)
    peak = jnp.where(jnp.isfinite(peak), peak, jnp.zeros_like(peak))
    e = jnp.exp(x - peak)
    total = jnp.sum(e, axis=axis, keepdims=True)
    return jnp.where(total == 0, jnp.zeros_like(e), e / jnp.where(total == 0, 1, total))
''',
    "logsumexp": """
def logsumexp(x, axis):
    peak = jnp.max(x, axis=axis, keepdims=True)
    peak = jnp.where(jnp.isfinite(peak), peak, jnp.zeros_like(peak))
    total = jnp.sum(jnp.exp(x - peak), axis=axis, keepdims=True)
    return jnp.squeeze(jnp.log(total) + peak, axis=axis)
""",
}
HELPER_NEEDS = {
    "tile": ("pad_tiles", "tile_size"),
    "pad_tiles": ("tile_size",),
    "attn_mask": ("tile_size",),
    "first_kv_tile": ("tile_size",),
    "end_kv_tile": ("tile_size",),
    "first_q_tile": ("tile_size",),
    "end_q_tile": ("tile_size",),
    "full_kv_tiles": ("tile_size", "first_kv_tile", "end_kv_tile"),
}
HELPERS_USING_JAX = ("dropout_keep",)
