"""The backward of a tiled flash node as IR: FlashAttention-2, Algorithm 2, at O(N) memory.

Inputs (q, k, v[, key], out, lse, d_out, d_lse); outputs (dq, dk, dv[, d_key]).

    delta = rowsum(d_out * out) - d_lse                 # float32, one per query row
    for j over key tiles:                               # dK_j, dV_j finish inside step j
        dK_j, dV_j = 0
        for i over the query tiles that see key tile j: # block skipping
            p     = exp(S_ij - lse_i), 0 where masked   # recomputed, never stored
            dV_j += dropout(p)^T . dO_i
            dP    = dropout'(dO_i . V_j^T)
            dS    = p * (dP - delta_i) * scale
            dQ_i += dS . K_j;   dK_j += dS^T . Q_i
        write dK_j, dV_j
With grouped-query attention the einsums sum dK and dV over the query heads of each group.
"""

from __future__ import annotations

from passes.flash_terms import (
    F32,
    Terms,
    apply_dropout,
    dropout_keep,
    kv_tiles,
    masked_scores,
    named_inputs,
    prologue,
    visible_tiles,
)
from passes.rewrite import NodeBuilder
from tlir import EinsumGraph, FlashSpec


def _query_step(spec: FlashSpec, t: Terms, block_q: int, tile: int) -> EinsumGraph:
    """Query tile i against key tile j: accumulate dQ_i, dK_j and dV_j."""
    body = NodeBuilder(0, "")
    whole = block_q == 0
    names = ["i", "j", "q", "k", "q_padded", "do_padded", "lse_padded", "delta_padded"]
    names += ["k_tile", "v_tile", "scale"] + (["key"] if spec.dropout > 0 else [])
    x = named_inputs(body, names + ["dq", "dk", "dv"])
    i, j, k_tile, v_tile, scale = x["i"], x["j"], x["k_tile"], x["v_tile"], x["scale"]
    dq, dk, dv = x["dq"], x["dk"], x["dv"]
    sc, row = t.scores, t.row

    def query_tile(tensor: int, term: str, name: str) -> int:
        if whole:
            return tensor
        return body.node(f"tile(q,{block_q}):{term},->{term}", [tensor, i], name)

    q_tile = query_tile(x["q_padded"], t.q, "q_tile")
    do_tile = query_tile(x["do_padded"], t.acc, "do_tile")
    lse_tile = query_tile(x["lse_padded"], row, "lse_tile")
    delta_tile = query_tile(x["delta_padded"], row, "delta_tile")
    masked = masked_scores(
        body, spec, t, (q_tile, k_tile), (x["q"], x["k"]), (i, j), scale, block_q, tile
    )
    shift = body.node(f"inf_to_zero:{row}->{row}", [lse_tile], "shift")
    centered = body.node(f"sub:{sc},{row}->{sc}", [masked, shift], "centered")
    p = body.node(f"exp:{sc}->{sc}", [centered], "p")
    dp = body.node(f"{t.acc},{t.v}->{sc}", [do_tile, v_tile], "dp", attrs=F32)
    p_used = p
    if spec.dropout > 0:
        keep = dropout_keep(body, spec, t, x["key"], (q_tile, k_tile), i, j)
        p_used = apply_dropout(body, spec, t, p, keep, "p_dropped")
        dp = apply_dropout(body, spec, t, dp, keep, "dp_dropped")
    p_low = body.node(f"cast_like:{sc},{t.acc}->{sc}", [p_used, do_tile], "p_cast")
    dv_part = body.node(f"{sc},{t.acc}->{t.v}", [p_low, do_tile], "dv_part", attrs=F32)
    dp_centered = body.node(f"sub:{sc},{row}->{sc}", [dp, delta_tile], "dp_centered")
    ds = body.node(f"mul:{sc},{sc}->{sc}", [p, dp_centered], "ds")
    ds_scaled = body.node(f"mul:{sc},->{sc}", [ds, scale], "ds_scaled")
    ds_low = body.node(f"cast_like:{sc},{t.k}->{sc}", [ds_scaled, k_tile], "ds_cast")
    dq_part = body.node(f"{sc},{t.k}->{t.q}", [ds_low, k_tile], "dq_part", attrs=F32)
    dk_part = body.node(f"{sc},{t.q}->{t.k}", [ds_low, q_tile], "dk_part", attrs=F32)
    new_dk = body.node(f"add:{t.k},{t.k}->{t.k}", [dk, dk_part], "new_dk")
    new_dv = body.node(f"add:{t.v},{t.v}->{t.v}", [dv, dv_part], "new_dv")
    if whole:
        new_dq = body.node(f"add:{t.q},{t.q}->{t.q}", [dq, dq_part], "new_dq")
    else:
        dq_tile = query_tile(dq, t.q, "dq_tile")
        dq_sum = body.node(f"add:{t.q},{t.q}->{t.q}", [dq_tile, dq_part], "dq_sum")
        put = f"put_tile(q,{block_q}):{t.q},{t.q},->{t.q}"
        new_dq = body.node(put, [dq, dq_sum, i], "new_dq")
    return body.graph(inputs=list(x.values()), outputs=[new_dq, new_dk, new_dv])


def _key_step(spec: FlashSpec, t: Terms, block_q: int, tile: int) -> EinsumGraph:
    """Key tile j: the loop over the query tiles that see it, then dK_j and dV_j written."""
    body = NodeBuilder(0, "")
    names = ["j", "q", "k", "q_padded", "do_padded", "lse_padded", "delta_padded"]
    names += ["k_padded", "v_padded", "scale"] + (["key"] if spec.dropout > 0 else [])
    x = named_inputs(body, names + ["dq", "dk", "dv"])
    j, q, k, dq, dk, dv = x["j"], x["q"], x["k"], x["dq"], x["dk"], x["dv"]
    k_tile, v_tile = kv_tiles(body, t, tile, x["k_padded"], x["v_padded"], j)
    dk0 = body.node(f"full(0):{t.k}->{t.k}", [k_tile], "dk0")
    dv0 = body.node(f"full(0):{t.v}->{t.v}", [v_tile], "dv0")
    lo, hi = visible_tiles(body, spec, t, "q", (block_q, tile), (q, k, j))
    carried = [body.tensor("dq_out"), body.tensor("dk_tile"), body.tensor("dv_tile")]
    rows = [x[name] for name in ("q_padded", "do_padded", "lse_padded", "delta_padded")]
    invariants = [j, q, k, *rows, k_tile, v_tile, x["scale"]]
    key = [x["key"]] if "key" in x else []
    body.node(
        "loop(carry=3)",
        [lo, hi, *invariants, *key, dq, dk0, dv0],
        outputs=carried,
        body=_query_step(spec, t, block_q, tile),
    )
    new_dq, dk_tile, dv_tile = carried
    put = f"put_tile(k,{tile})"
    new_dk = body.node(f"{put}:{t.k},{t.k},->{t.k}", [dk, dk_tile, j], "new_dk")
    new_dv = body.node(f"{put}:{t.v},{t.v},->{t.v}", [dv, dv_tile, j], "new_dv")
    return body.graph(inputs=list(x.values()), outputs=[new_dq, new_dk, new_dv])


def backward_graph(spec: FlashSpec, block_q: int, tile: int) -> EinsumGraph:
    """The grad body of tile-flash's custom_vjp node (see the module docstring)."""
    build = NodeBuilder(0, "")
    q, k, v = build.tensor("q"), build.tensor("k"), build.tensor("v")
    key = [build.tensor("key")] if spec.dropout > 0 else []
    out, lse, d_out, d_lse = (build.tensor(n) for n in ("out", "lse", "d_out", "d_lse"))
    t = Terms.of(spec)
    q_rows = t.rows_of(build, q, "bhqd", k, "q_grouped")
    out_rows = t.rows_of(build, out, "bhqv", k, "out_grouped")
    do_rows = t.rows_of(build, d_out, "bhqv", k, "d_out_grouped")
    lse_rows = t.rows_of(build, lse, "bhq", k, "lse_grouped")
    dlse_rows = t.rows_of(build, d_lse, "bhq", k, "d_lse_grouped")
    out32 = build.node(f"cast(float32):{t.acc}->{t.acc}", [out_rows], "out32")
    do32 = build.node(f"cast(float32):{t.acc}->{t.acc}", [do_rows], "d_out32")
    product = build.node(f"mul:{t.acc},{t.acc}->{t.acc}", [do32, out32], "d_out_out")
    rowsum = build.node(f"sum:{t.acc}->{t.row}", [product], "rowsum")
    delta = build.node(f"sub:{t.row},{t.row}->{t.row}", [rowsum, dlse_rows], "delta")
    scale, k_padded, v_padded = prologue(build, t, q, k, v, tile)
    if block_q == 0:
        padded = [q_rows, do_rows, lse_rows, delta]
    else:
        pad = f"pad_tiles(q,{block_q})"
        padded = [
            build.node(f"{pad}:{term}->{term}", [x], name)
            for x, term, name in (
                (q_rows, t.q, "q_padded"),
                (do_rows, t.acc, "d_out_padded"),
                (lse_rows, t.row, "lse_padded"),
                (delta, t.row, "delta_padded"),
            )
        ]
    dq0 = build.node(f"full(0):{t.q}->{t.q}", [padded[0]], "dq0")
    dk0 = build.node(f"full(0):{t.k}->{t.k}", [k_padded], "dk0")
    dv0 = build.node(f"full(0):{t.v}->{t.v}", [v_padded], "dv0")
    lo = build.node("iconst(0):->", [], "lo")
    hi = build.node(f"num_tiles(k,{tile}):{t.k}->", [k], "hi")
    results = [build.tensor("dq_padded"), build.tensor("dk_padded"), build.tensor("dv_padded")]
    build.node(
        "loop(carry=3)",
        [lo, hi, q_rows, k, *padded, k_padded, v_padded, scale, *key, dq0, dk0, dv0],
        outputs=results,
        body=_key_step(spec, t, block_q, tile),
    )
    dq_rows, dk_padded, dv_padded = results
    if block_q != 0:
        dq_rows = build.node(f"crop(q):{t.q},{t.q}->{t.q}", [dq_rows, q_rows], "dq_rows")
    dk = build.node(f"crop(k):{t.k},{t.k}->{t.k}", [dk_padded, k], "dk32")
    dv = build.node(f"crop(k):{t.v},{t.v}->{t.v}", [dv_padded, v], "dv32")
    dq = t.heads_of(build, dq_rows, t.q, "dq32")
    grads = [
        build.node("cast_like:bhqd,bhqd->bhqd", [dq, q], "dq"),
        build.node(f"cast_like:{t.k},{t.k}->{t.k}", [dk, k], "dk"),
        build.node(f"cast_like:{t.v},{t.v}->{t.v}", [dv, v], "dv"),
    ]
    if key:
        grads.append(build.node("const(0):->", [], "d_key"))  # a PRNG key has no cotangent
    return build.graph(inputs=[q, k, v, *key, out, lse, d_out, d_lse], outputs=grads)
