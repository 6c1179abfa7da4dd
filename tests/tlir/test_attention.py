"""The seed's attention builders: a port of every test of flash_attention.rs, the fixed defects,
windows, grouped-query attention, cross-attention shapes and invalid configurations.

Legend: b batch, h query heads, g kv heads, q/k query/key positions, d head dim, v value dim,
s sequence positions before the head split.
"""

from __future__ import annotations

import warnings

import pytest

from tlir import (
    ConfigError,
    EinsumGraph,
    FlashAttention,
    FlashAttentionConfig,
    FlashAttentionPreset,
    FlashAttentionStats,
    FlashAttentionV2Config,
    FlashSpec,
    GraphError,
    MultiHeadAttention,
    OpSpec,
    infer_shapes,
    parse_spec,
)


def qkv() -> EinsumGraph:
    graph = EinsumGraph()
    for name in ("Q", "K", "V"):
        graph.add_tensor(name)
    return graph


def build_flash(config) -> tuple[EinsumGraph, list[int]]:
    graph = qkv()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no SpecWarning: tlir writes `->`, not the seed's `-:`
        outputs = FlashAttention(config).build_flash_graph(graph)
    graph.validate()
    return graph, outputs


def flash_node(graph: EinsumGraph) -> FlashSpec:
    (spec,) = [node.parsed for node in graph.nodes if node.kind == "flash"]
    return spec


# ------------------------------------------------------- the seed's tests, one for one


def test_flash_config_creation():
    config = FlashAttentionConfig(512, 8)
    assert config.d_model == 512
    assert config.n_heads == 8
    assert config.d_k == 64
    assert config.block_size_q == 128
    assert config.block_size_kv == 128


def test_flash_config_builder():
    config = (
        FlashAttentionConfig(512, 8)
        .with_block_sizes(64, 64)
        .with_causal(True)
        .with_dropout(0.1)
        .with_max_seq_len(8192)
    )
    assert config.block_size_q == 64
    assert config.block_size_kv == 64
    assert config.causal
    assert abs(config.dropout - 0.1) < 1e-10
    assert config.max_seq_len == 8192


def test_flash_invalid_config():
    with pytest.raises(ConfigError, match=r"d_model must be a multiple of n_heads: "):
        FlashAttentionConfig(512, 7)


def test_flash_sram_usage():
    config = FlashAttentionConfig(512, 8)
    # Q, K, V, O: 128 * 64 = 8192 each; S: 128 * 128 = 16384
    assert config.sram_usage_per_block() == 49152


def test_flash_memory_savings():
    config = FlashAttentionConfig(512, 8)
    assert config.memory_savings(4096) > 0.9


def test_flash_num_passes():
    config = FlashAttentionConfig(512, 8)
    assert config.num_kv_passes(4096) == 32
    assert config.num_q_blocks(4096) == 32
    assert config.num_kv_passes(1000) == 8  # ceiling


def test_flash_graph_building():
    _, outputs = build_flash(FlashAttentionConfig(512, 8))
    assert len(outputs) == 1


def test_flash_causal_graph():
    graph, outputs = build_flash(FlashAttentionConfig(512, 8).with_causal(True))
    assert len(outputs) == 1
    assert flash_node(graph).causal  # the seed's spec dropped the flag


def test_flash_v2_config():
    config = (
        FlashAttentionV2Config(512, 8)
        .with_sequence_parallel(True)
        .with_window(4096)
        .with_causal(True)
    )
    assert config.sequence_parallel
    assert config.window_size == 4096
    assert config.base.causal


def test_flash_presets():
    assert FlashAttentionPreset.STANDARD.block_sizes() == (128, 128)
    assert FlashAttentionPreset.LARGE_BLOCKS.block_sizes() == (256, 256)
    assert FlashAttentionPreset.A100_OPTIMIZED.block_sizes() == (128, 64)


def test_flash_preset_config():
    config = FlashAttentionPreset.STANDARD.config(512, 8)
    assert config.block_size_q == 128
    assert config.block_size_kv == 128


def test_flash_preset_names():
    assert FlashAttentionPreset.STANDARD.display_name == "Standard"
    assert FlashAttentionPreset.A100_OPTIMIZED.display_name == "A100 Optimized"


def test_flash_stats():
    stats = FlashAttentionStats.from_config(FlashAttentionConfig(512, 8), 4096)
    assert stats.memory_savings > 0.9
    assert stats.sram_usage == 49152
    assert stats.num_kv_passes == 32
    assert stats.num_q_blocks == 32


def test_flash_validate():
    config = FlashAttentionConfig(512, 8)
    config.validate()
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\], found 1\.5"):
        config.with_dropout(1.5).validate()
    with pytest.raises(ConfigError, match=r"block_size_q must be a positive integer, found 0"):
        config.with_block_sizes(0, 128).validate()


# ------------------------------------------------------------------- the built graphs


def test_flash_graph_nodes():
    graph, (output,) = build_flash(FlashAttentionConfig(512, 8))
    assert [node.spec for node in graph.nodes] == [
        "bsd->bsh64", "bsd->bsh64", "bsd->bsh64",
        "bshd->bhsd", "bshd->bhsd", "bshd->bhsd",
        "flash_bhqd,bhkd,bhkv->bhqv_128_128",
        "bhsd->bshd",
        "bsh64->bsd",
    ]  # fmt: skip
    assert [node.kind for node in graph.nodes] == [
        "reshape", "reshape", "reshape", "einsum", "einsum", "einsum", "flash", "einsum",
        "reshape",
    ]  # fmt: skip
    assert graph.tensors[output] == "flash_output"
    assert (graph.inputs, graph.outputs) == ([0, 1, 2], [output])


def test_the_merge_reshape_uses_an_arrow():
    graph, _ = build_flash(FlashAttentionConfig(256, 4))
    assert graph.nodes[-1].spec == "bsh64->bsd"
    assert "-:" not in str(graph)


@pytest.mark.parametrize(
    ("config", "flags"),
    [
        (FlashAttentionConfig(512, 8), ""),
        (FlashAttentionConfig(512, 8).with_causal(True), "_causal"),
        (FlashAttentionConfig(512, 8).with_dropout(0.1), "_dropout0.1"),
        (FlashAttentionV2Config(512, 8).with_window(256), "_window255x255"),
        (FlashAttentionV2Config(512, 8).with_window(256).with_causal(True), "_causal_window255x0"),
        (FlashAttentionV2Config(512, 8).with_causal(True).with_window((7, 3)), "_causal_window7x3"),
    ],
    ids=["plain", "causal", "dropout", "window", "window-causal", "window-pair-causal"],
)
def test_the_flash_spec_carries_the_options(config, flags):
    graph, _ = build_flash(config)
    assert graph.nodes[6].spec == f"flash_bhqd,bhkd,bhkv->bhqv_128_128{flags}"
    assert FlashAttention(config).flash_spec() == graph.nodes[6].spec


def test_dropout_reads_a_prng_key_input():
    graph, _ = build_flash(FlashAttentionConfig(512, 8).with_dropout(0.25))
    flash = graph.nodes[6]
    assert flash_node(graph).dropout == 0.25
    assert len(flash.inputs) == 4
    key = flash.inputs[3]
    assert graph.tensors[key] == "flash_dropout_key"
    assert [graph.tensors[t] for t in graph.inputs] == ["Q", "K", "V", "flash_dropout_key"]


def test_block_sizes_reach_the_spec():
    graph, _ = build_flash(FlashAttentionPreset.A100_OPTIMIZED.config(512, 8))
    spec = flash_node(graph)
    assert (spec.block_q, spec.block_kv) == (128, 64)


def test_sequence_parallel_changes_no_node():
    plain, _ = build_flash(FlashAttentionV2Config(512, 8))
    parallel, _ = build_flash(FlashAttentionV2Config(512, 8).with_sequence_parallel(True))
    assert parallel == plain


def test_builders_append_after_existing_tensors_and_nodes():
    graph = qkv()
    FlashAttention(FlashAttentionConfig(512, 8)).build_flash_graph(graph)
    n_tensors, n_nodes = len(graph.tensors), len(graph.nodes)
    (second,) = FlashAttention(FlashAttentionConfig(512, 8)).build_flash_graph(graph)
    assert len(graph.nodes) == 2 * n_nodes
    assert second == len(graph.tensors) - 1 > n_tensors
    assert graph.nodes[n_nodes].inputs == (0,)  # reads Q again


def test_builders_need_q_k_v():
    graph = EinsumGraph()
    graph.add_tensor("Q")
    message = r"build_flash_graph expects tensors 0, 1, 2 to be Q, K, V; the graph has 1 tensor"
    with pytest.raises(GraphError, match=message):
        FlashAttention(FlashAttentionConfig(512, 8)).build_flash_graph(graph)
    with pytest.raises(GraphError, match=r"build_mha_graph expects tensors 0, 1, 2 to be Q, K, V"):
        MultiHeadAttention(FlashAttentionConfig(512, 8)).build_mha_graph(graph)
    assert (graph.tensors, graph.nodes) == (["Q"], [])


def test_mha_graph_nodes():
    graph = qkv()
    (output,) = MultiHeadAttention(FlashAttentionConfig(512, 8)).build_mha_graph(graph)
    assert [node.spec for node in graph.nodes] == [
        "bsd->bsh64", "bsd->bsh64", "bsd->bsh64",
        "bshd->bhsd", "bshd->bhsd", "bshd->bhsd",
        "bhqd,bhkd->bhqk", "div_scalar_8", "softmax_k", "bhqk,bhkv->bhqv",
        "bhsd->bshd", "bsh64->bsd",
    ]  # fmt: skip
    scale = graph.nodes[7]
    assert graph.tensors[scale.inputs[1]] == "mha_scale"  # the seed's placeholder
    assert graph.tensors[output] == "mha_output"
    graph.validate()


def test_mha_scale_that_is_no_integer_parses_without_a_kind():
    graph = qkv()
    MultiHeadAttention(FlashAttentionConfig(256, 8)).build_mha_graph(graph)
    spec = graph.nodes[7].spec
    assert spec == "div_scalar_5.656854249492381"  # sqrt(32)
    parsed = parse_spec(spec)
    assert isinstance(parsed, OpSpec)
    assert parsed.args == (32**0.5,)


# ---------------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("window", "causal", "expected"),
    [
        (None, False, None),
        (1, False, (0, 0)),
        (256, False, (255, 255)),
        (256, True, (255, 0)),
        ((7, 3), False, (7, 3)),
        ((7, 3), True, (7, 3)),
        ((0, 0), False, (0, 0)),
    ],
    ids=["none", "w1", "w256", "w256-causal", "pair", "pair-causal", "pair-zero"],
)
def test_flash_window(window, causal, expected):
    config = FlashAttentionV2Config(512, 8).with_causal(causal)
    if window is not None:
        config = config.with_window(window)
    assert config.flash_window() == expected
    graph, _ = build_flash(config)
    spec = flash_node(graph)
    assert spec.window == expected
    assert spec.causal == causal


def test_a_causal_window_pair_still_sees_no_future_key():
    config = FlashAttentionV2Config(512, 8).with_window((7, 3)).with_causal(True)
    graph, _ = build_flash(config)
    assert flash_node(graph).visible_window() == (7, 0)


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (0, r"window_size must be >= 1, found 0"),
        (-3, r"window_size must be >= 1, found -3"),
        ((1,), r"window_size must be an int >= 1 or a \(left, right\) pair, found \(1,\)"),
        ((-1, 2), r"a \(left, right\) pair, found \(-1, 2\)"),
        ((1, 2, 3), r"a \(left, right\) pair, found \(1, 2, 3\)"),
        (True, r"a \(left, right\) pair, found True"),
        (2.5, r"a \(left, right\) pair, found 2\.5"),
        ("4", r"a \(left, right\) pair, found '4'"),
    ],
    ids=["zero", "negative", "one-element", "negative-left", "triple", "bool", "float", "str"],
)
def test_invalid_windows(window, message):
    with pytest.raises(ConfigError, match=message):
        FlashAttentionV2Config(512, 8).with_window(window)  # refused where it is given
    config = FlashAttentionV2Config(512, 8)
    config.window_size = window  # a field set directly is caught by validate and the builder
    with pytest.raises(ConfigError, match=message):
        config.validate()
    with pytest.raises(ConfigError, match=message):
        FlashAttention(config)


# --------------------------------------------------------------- grouped-query attention


@pytest.mark.parametrize(("kv_heads", "label"), [(8, "h"), (2, "g"), (1, "g")], ids=str)
def test_with_kv_heads(kv_heads, label):
    config = FlashAttentionConfig(512, 8).with_kv_heads(kv_heads)
    assert config.kv_heads == kv_heads
    graph, _ = build_flash(config)
    spec = flash_node(graph)
    assert spec.text == f"flash_bhqd,b{label}kd,b{label}kv->bhqv_128_128"
    assert spec.grouped == (kv_heads != 8)
    d_kv = kv_heads * 64
    shapes = infer_shapes(graph, {"Q": (2, 5, 512), "K": (2, 9, d_kv), "V": (2, 9, d_kv)})
    by_name = {graph.tensors[t]: shape for t, shape in shapes.items()}
    assert by_name["flash_k_transposed"] == (2, kv_heads, 9, 64)
    assert by_name["flash_attn_output"] == (2, 8, 5, 64)
    assert by_name["flash_output"] == (2, 5, 512)


def test_kv_heads_default_to_the_query_heads():
    assert FlashAttentionConfig(512, 8).kv_heads == 8


@pytest.mark.parametrize("kv_heads", [3, 0, -2, 16], ids=str)
def test_kv_heads_must_divide_the_query_heads(kv_heads):
    message = rf"n_kv_heads must be a positive divisor of n_heads=8, found {kv_heads}"
    with pytest.raises(ConfigError, match=message):
        FlashAttentionConfig(512, 8).with_kv_heads(kv_heads)
    config = FlashAttentionConfig(512, 8)
    config.n_kv_heads = kv_heads
    with pytest.raises(ConfigError, match=message):
        FlashAttention(config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.with_dropout(1.5), r"dropout must be in \[0, 1\], found 1\.5"),
        (lambda c: c.with_dropout("0.1"), r"dropout must be a number in \[0, 1\], found '0\.1'"),
        (lambda c: c.with_block_sizes(0, 64), r"block_size_q must be a positive integer, found 0"),
        (lambda c: c.with_block_sizes(64, 32.5), r"block_size_kv must be a positive integer"),
        (lambda c: c.with_causal("False"), r"causal must be True or False, found 'False'"),
    ],
    ids=["dropout-range", "dropout-type", "block-zero", "block-float", "causal-str"],
)
def test_builder_methods_refuse_bad_values_where_given(change, message):
    with pytest.raises(ConfigError, match=message):
        change(FlashAttentionConfig(512, 8))


def test_v2_config_chains_the_base_options_and_checks_its_base():
    config = (
        FlashAttentionV2Config(512, 8).with_kv_heads(2).with_block_sizes(64, 32).with_dropout(0.1)
    )
    assert (config.base.kv_heads, config.base.block_size_q, config.base.dropout) == (2, 64, 0.1)
    with pytest.raises(ConfigError, match=r"base has d_model=64, n_heads=4; expected d_model=32"):
        FlashAttentionV2Config(32, 8, base=FlashAttentionConfig(64, 4))


def test_gqa_shapes_check_the_head_ratio():
    graph, _ = build_flash(FlashAttentionConfig(512, 8).with_kv_heads(2))
    message = r"query heads 'h'=8 must be a multiple of kv heads 'g'=3"
    with pytest.raises(GraphError, match=message):
        infer_shapes(graph, {"Q": (2, 5, 512), "K": (2, 9, 192), "V": (2, 9, 192)})


# ------------------------------------------------------------------- cross-attention shapes


@pytest.mark.parametrize(("sq", "skv"), [(5, 9), (9, 5), (1, 7), (7, 7)], ids=lambda s: str(s))
def test_cross_attention_shapes(sq, skv):
    inputs = {"Q": (2, sq, 512), "K": (2, skv, 512), "V": (2, skv, 512)}
    graph, (output,) = build_flash(FlashAttentionConfig(512, 8).with_causal(True))
    shapes = infer_shapes(graph, inputs)
    assert shapes[output] == (2, sq, 512)
    assert shapes[graph.nodes[6].outputs[0]] == (2, 8, sq, 64)
    mha = qkv()
    (mha_output,) = MultiHeadAttention(FlashAttentionConfig(512, 8)).build_mha_graph(mha)
    mha_shapes = infer_shapes(mha, inputs)
    assert mha_shapes[mha_output] == (2, sq, 512)
    assert mha_shapes[mha.nodes[6].outputs[0]] == (2, 8, sq, skv)  # the scores


def test_mismatched_kv_lengths_are_refused():
    graph, _ = build_flash(FlashAttentionConfig(512, 8))
    with pytest.raises(GraphError, match=r"label 'k' has size 9 in operand k but 7 in operand v"):
        infer_shapes(graph, {"Q": (2, 5, 512), "K": (2, 9, 512), "V": (2, 7, 512)})


# ------------------------------------------------------------------ invalid configurations

INVALID_CONFIGS = [
    ("d_model-not-multiple", lambda: FlashAttentionConfig(512, 7),
     r"d_model must be a multiple of n_heads: d_model=512, n_heads=7"),
    ("v2-d_model-not-multiple", lambda: FlashAttentionV2Config(100, 3),
     r"d_model must be a multiple of n_heads: d_model=100, n_heads=3"),
    ("d_model-zero", lambda: FlashAttentionConfig(0, 8),
     r"d_model must be a positive integer, found 0"),
    ("n_heads-zero", lambda: FlashAttentionConfig(512, 0),
     r"n_heads must be a positive integer, found 0"),
    ("d_model-negative", lambda: FlashAttentionConfig(-512, 8),
     r"d_model must be a positive integer, found -512"),
    ("d_model-float", lambda: FlashAttentionConfig(512.0, 8),
     r"d_model must be a positive integer, found 512\.0"),
    ("n_heads-bool", lambda: FlashAttentionConfig(512, True),
     r"n_heads must be a positive integer, found True"),
    ("dropout-above-1", lambda: FlashAttention(FlashAttentionConfig(512, 8).with_dropout(1.5)),
     r"dropout must be in \[0, 1\], found 1\.5"),
    ("dropout-negative", lambda: FlashAttention(FlashAttentionConfig(512, 8).with_dropout(-0.1)),
     r"dropout must be in \[0, 1\], found -0\.1"),
    ("dropout-nan", lambda: FlashAttention(FlashAttentionConfig(512, 8).with_dropout(float("nan"))),
     r"dropout must be in \[0, 1\], found nan"),
    ("block-q-zero", lambda: FlashAttention(FlashAttentionConfig(512, 8).with_block_sizes(0, 64)),
     r"block_size_q must be a positive integer, found 0"),
    ("block-kv-zero", lambda: FlashAttention(FlashAttentionConfig(512, 8).with_block_sizes(64, 0)),
     r"block_size_kv must be a positive integer, found 0"),
    ("block-float", lambda: FlashAttention(FlashAttentionConfig(512, 8).with_block_sizes(64.0, 64)),
     r"block_size_q must be a positive integer, found 64\.0"),
    ("max-seq-len-zero", lambda: FlashAttention(FlashAttentionConfig(512, 8).with_max_seq_len(0)),
     r"max_seq_len must be a positive integer, found 0"),
    ("v2-zero-blocks", lambda: FlashAttention(FlashAttentionV2Config(
        512, 8, base=FlashAttentionConfig(512, 8).with_block_sizes(0, 0))),
     r"block_size_q must be a positive integer, found 0"),
    ("not-a-config", lambda: FlashAttention("config"),
     r"expected a FlashAttentionConfig or FlashAttentionV2Config, found str"),
    ("mha-causal-dropout", lambda: MultiHeadAttention(
        FlashAttentionConfig(512, 8).with_causal(True).with_dropout(0.1)),
     r"the unfused multi-head graph has no causal, dropout; use FlashAttention for these options"),
    ("mha-window", lambda: MultiHeadAttention(FlashAttentionV2Config(512, 8).with_window(4)),
     r"the unfused multi-head graph has no window"),
    ("mha-kv-heads", lambda: MultiHeadAttention(FlashAttentionConfig(512, 8).with_kv_heads(2)),
     r"the unfused multi-head graph has no kv heads"),
    ("mha-zero-blocks", lambda: MultiHeadAttention(
        FlashAttentionConfig(512, 8).with_block_sizes(0, 64)),
     r"block_size_q must be a positive integer, found 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [row[1:] for row in INVALID_CONFIGS],
    ids=[row[0] for row in INVALID_CONFIGS],
)
def test_invalid_configurations(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_with_methods_return_changed_copies():
    config = FlashAttentionConfig(512, 8)
    changed = config.with_causal(True).with_block_sizes(64, 32).with_kv_heads(2)
    assert (config.causal, config.block_size_q, config.n_kv_heads) == (False, 128, None)
    assert (changed.causal, changed.block_size_q, changed.block_size_kv) == (True, 64, 32)
    assert changed.d_k == 64
    v2 = FlashAttentionV2Config(512, 8)
    v2_changed = v2.with_window(16).with_causal(True)
    assert (v2.window_size, v2.base.causal) == (None, False)
    assert (v2_changed.window_size, v2_changed.base.causal) == (16, True)


# ------------------------------------------------------------------- presets and stats

PRESETS = [
    (FlashAttentionPreset.STANDARD, (128, 128), "Standard"),
    (FlashAttentionPreset.LARGE_BLOCKS, (256, 256), "Large Blocks"),
    (FlashAttentionPreset.SMALL_BLOCKS, (64, 64), "Small Blocks"),
    (FlashAttentionPreset.A100_OPTIMIZED, (128, 64), "A100 Optimized"),
    (FlashAttentionPreset.H100_OPTIMIZED, (128, 128), "H100 Optimized"),
]


@pytest.mark.parametrize(("preset", "blocks", "name"), PRESETS, ids=[p[2] for p in PRESETS])
def test_every_preset(preset, blocks, name):
    assert preset.block_sizes() == blocks
    assert preset.display_name == name
    config = preset.config(512, 8)
    assert (config.block_size_q, config.block_size_kv) == blocks
    graph, _ = build_flash(config)
    assert (flash_node(graph).block_q, flash_node(graph).block_kv) == blocks


def test_preset_config_checks_the_heads():
    with pytest.raises(ConfigError, match=r"d_model must be a multiple of n_heads"):
        FlashAttentionPreset.SMALL_BLOCKS.config(512, 7)


def test_stats_summary():
    stats = FlashAttentionStats.from_config(FlashAttentionConfig(512, 8), 4096)
    assert stats.summary(4096) == (
        "Flash Attention Statistics\n"
        "  d_model: 512\n"
        "  n_heads: 8\n"
        "  block_size_q: 128\n"
        "  block_size_kv: 128\n"
        "  causal: false\n"
        "  memory savings: 98.2%\n"
        "  SRAM usage: 49152 elements\n"
        "  num_kv_passes: 32\n"
        "  num_q_blocks: 32\n"
        "  seq_len: 4096"
    )


def test_stats_keep_a_copy_of_the_config():
    config = FlashAttentionConfig(512, 8)
    stats = FlashAttentionStats.from_config(config, 1000)
    assert stats.config == config and stats.config is not config
    assert (stats.num_kv_passes, stats.num_q_blocks) == (8, 8)
