"""The seed's attention builders, in Python naming, with the seed's defects fixed.

`FlashAttention(config).build_flash_graph(graph)` expects tensors 0, 1, 2 to be Q, K, V of shape
[b, s, d_model] (K and V: [b, s_kv, n_kv_heads * d_k]) and emits

    bsd->bsh<dk> (x3)  ->  bshd->bhsd (x3)  ->  flash_bhqd,bhkd,bhkv->bhqv_<Bq>_<Bc>[flags]
    ->  bhsd->bshd  ->  bsh<dk>->bsd

Unlike the seed, the flash spec carries `_causal`, the window and `_dropout<p>`, and the merge
reshape is written with `->`. With `with_kv_heads(g)` the kv-head label becomes `g`
(grouped-query attention). `MultiHeadAttention(config).build_mha_graph(graph)` emits the seed's
unfused graph (scores, div_scalar, softmax_k, weighted sum).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace

from tlir.errors import ConfigError, GraphError
from tlir.graph import EinsumGraph, EinsumNode
from tlir.spec import format_flash


@dataclass
class FlashAttentionConfig:
    """Configuration of fused attention; `with_*` return a changed copy, as the seed's builders."""

    d_model: int
    n_heads: int
    d_k: int = field(init=False)
    block_size_q: int = 128
    block_size_kv: int = 128
    causal: bool = False
    dropout: float = 0.0
    max_seq_len: int = 4096
    n_kv_heads: int | None = None

    def __post_init__(self) -> None:
        self.validate()
        self.d_k = self.d_model // self.n_heads

    def _changed(self, **changes: object) -> FlashAttentionConfig:
        """A validated copy (__post_init__ validates): a bad value is refused where it is
        given, not at build time."""
        return replace(self, **changes)

    def with_block_sizes(self, block_q: int, block_kv: int) -> FlashAttentionConfig:
        return self._changed(block_size_q=block_q, block_size_kv=block_kv)

    def with_causal(self, causal: bool) -> FlashAttentionConfig:
        if not isinstance(causal, bool):
            raise ConfigError(f"causal must be True or False, found {causal!r}")
        return self._changed(causal=causal)

    def with_dropout(self, dropout: float) -> FlashAttentionConfig:
        return self._changed(dropout=dropout)

    def with_max_seq_len(self, max_seq_len: int) -> FlashAttentionConfig:
        """The longest sequence for the seed's memory estimates; it does not limit a graph."""
        return self._changed(max_seq_len=max_seq_len)

    def with_kv_heads(self, n_kv_heads: int) -> FlashAttentionConfig:
        """Grouped-query (1 < n < n_heads) or multi-query (n = 1) attention."""
        return self._changed(n_kv_heads=n_kv_heads)

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid field."""
        for name in ("d_model", "n_heads", "block_size_q", "block_size_kv", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, found {value!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model must be a multiple of n_heads: d_model={self.d_model}, "
                f"n_heads={self.n_heads}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ConfigError(f"dropout must be a number in [0, 1], found {self.dropout!r}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ConfigError(f"dropout must be in [0, 1], found {self.dropout}")
        g = self.kv_heads
        if not isinstance(g, int) or g <= 0 or self.n_heads % g:
            raise ConfigError(
                f"n_kv_heads must be a positive divisor of n_heads={self.n_heads}, found {g!r}"
            )

    def sram_usage_per_block(self) -> int:
        """Elements held per block: Q, K, V, S and O tiles (the seed's estimate)."""
        q_block = self.block_size_q * self.d_k
        k_block = self.block_size_kv * self.d_k
        v_block = self.block_size_kv * self.d_k
        s_block = self.block_size_q * self.block_size_kv
        o_block = self.block_size_q * self.d_k
        return q_block + k_block + v_block + s_block + o_block

    def memory_savings(self, seq_len: int) -> float:
        standard = seq_len * seq_len + seq_len * self.d_k
        flash = seq_len * self.d_k + self.sram_usage_per_block()
        return 1.0 - flash / standard

    def num_kv_passes(self, seq_len: int) -> int:
        return -(-seq_len // self.block_size_kv)

    def num_q_blocks(self, seq_len: int) -> int:
        return -(-seq_len // self.block_size_q)


Window = int | tuple[int, int]


@dataclass
class FlashAttentionV2Config:
    """The seed's v2 options: sequence parallelism (a no-op on XLA) and a sliding window."""

    base: FlashAttentionConfig
    sequence_parallel: bool = False
    window_size: Window | None = None

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        base: FlashAttentionConfig | None = None,
        sequence_parallel: bool = False,
        window_size: Window | None = None,
    ) -> None:
        if base is not None and (base.d_model, base.n_heads) != (d_model, n_heads):
            raise ConfigError(
                f"base has d_model={base.d_model}, n_heads={base.n_heads}; "
                f"expected d_model={d_model}, n_heads={n_heads}"
            )
        self.base = base if base is not None else FlashAttentionConfig(d_model, n_heads)
        self.sequence_parallel = sequence_parallel
        self.window_size = window_size

    def _copy(self, **changes: object) -> FlashAttentionV2Config:
        fields = {
            "base": self.base,
            "sequence_parallel": self.sequence_parallel,
            "window_size": self.window_size,
            **changes,
        }
        d_model, n_heads = self.base.d_model, self.base.n_heads
        return FlashAttentionV2Config(d_model, n_heads, **fields)  # type: ignore[arg-type]

    def with_sequence_parallel(self, enabled: bool) -> FlashAttentionV2Config:
        return self._copy(sequence_parallel=bool(enabled))

    def with_window(self, window: Window) -> FlashAttentionV2Config:
        """An int w: a query sees keys at distance < w; a pair: (left, right) as given."""
        changed = self._copy(window_size=window)
        changed.flash_window()
        return changed

    def with_causal(self, causal: bool) -> FlashAttentionV2Config:
        return self._copy(base=self.base.with_causal(causal))

    # The base configuration's options, so that a v2 configuration is built in one chain.
    def with_block_sizes(self, block_q: int, block_kv: int) -> FlashAttentionV2Config:
        return self._copy(base=self.base.with_block_sizes(block_q, block_kv))

    def with_dropout(self, dropout: float) -> FlashAttentionV2Config:
        return self._copy(base=self.base.with_dropout(dropout))

    def with_kv_heads(self, n_kv_heads: int) -> FlashAttentionV2Config:
        return self._copy(base=self.base.with_kv_heads(n_kv_heads))

    def validate(self) -> None:
        self.base.validate()
        self.flash_window()

    def flash_window(self) -> tuple[int, int] | None:
        """The window as (left, right) for the flash spec; right is 0 when causal."""
        window = self.window_size
        if window is None:
            return None
        if isinstance(window, int) and not isinstance(window, bool):
            if window < 1:
                raise ConfigError(f"window_size must be >= 1, found {window}")
            return (window - 1, 0 if self.base.causal else window - 1)
        if (
            isinstance(window, tuple)
            and len(window) == 2
            and all(isinstance(w, int) and w >= 0 for w in window)
        ):
            return (window[0], window[1])
        raise ConfigError(
            f"window_size must be an int >= 1 or a (left, right) pair, found {window!r}"
        )


def _flash_options(config: FlashAttentionConfig | FlashAttentionV2Config) -> tuple:
    if isinstance(config, FlashAttentionV2Config):
        config.validate()
        return config.base, config.flash_window()
    if isinstance(config, FlashAttentionConfig):
        config.validate()
        return config, None
    raise ConfigError(
        f"expected a FlashAttentionConfig or FlashAttentionV2Config, found {type(config).__name__}"
    )


def _require_qkv(graph: EinsumGraph, builder: str) -> None:
    if len(graph.tensors) < 3:
        raise GraphError(
            f"{builder} expects tensors 0, 1, 2 to be Q, K, V; the graph has "
            f"{len(graph.tensors)} tensor(s)"
        )


def _split_heads(graph: EinsumGraph, d_k: int, prefix: str) -> list[int]:
    """Q, K, V [b,s,d] -> [b,h,s,dk] through the seed's reshape and transpose nodes."""
    split = [graph.add_tensor(f"{prefix}_{r}_split") for r in "qkv"]
    for source, target in zip((0, 1, 2), split):
        graph.add_node(EinsumNode(f"bsd->bsh{d_k}", (source,), (target,)))
    transposed = [graph.add_tensor(f"{prefix}_{r}_transposed") for r in "qkv"]
    for source, target in zip(split, transposed):
        graph.add_node(EinsumNode("bshd->bhsd", (source,), (target,)))
    return transposed


def _merge_heads(graph: EinsumGraph, heads: int, d_k: int, prefix: str) -> int:
    back = graph.add_tensor(f"{prefix}_transposed_back")
    graph.add_node(EinsumNode("bhsd->bshd", (heads,), (back,)))
    output = graph.add_tensor(f"{prefix}_output")
    graph.add_node(EinsumNode(f"bsh{d_k}->bsd", (back,), (output,)))
    return output


class FlashAttention:
    """Builds the flash-attention graph of a configuration (v1 or v2)."""

    def __init__(self, config: FlashAttentionConfig | FlashAttentionV2Config) -> None:
        _flash_options(config)
        self.config = config

    def flash_spec(self) -> str:
        base, window = _flash_options(self.config)
        kv_head = "h" if base.kv_heads == base.n_heads else "g"
        return format_flash(
            ("b", "h", "q", "d"),
            ("b", kv_head, "k", "d"),
            ("b", kv_head, "k", "v"),
            ("b", "h", "q", "v"),
            base.block_size_q,
            base.block_size_kv,
            causal=base.causal,
            window=window,
            dropout=base.dropout,
        )

    def build_flash_graph(self, graph: EinsumGraph) -> list[int]:
        """Append the flash-attention nodes; returns the output tensor ids."""
        _require_qkv(graph, "build_flash_graph")
        base, _ = _flash_options(self.config)
        spec = self.flash_spec()
        q, k, v = _split_heads(graph, base.d_k, "flash")
        operands = [q, k, v]
        if base.dropout > 0:
            operands.append(graph.add_tensor("flash_dropout_key"))
        attended = graph.add_tensor("flash_attn_output")
        graph.add_node(EinsumNode(spec, tuple(operands), (attended,)))
        # The seed names this tensor flash_transposed_back and the output flash_output.
        return [_merge_heads(graph, attended, base.d_k, "flash")]


class MultiHeadAttention:
    """The seed's unfused multi-head attention graph: scores, scale, softmax, weighted sum."""

    def __init__(self, config: FlashAttentionConfig) -> None:
        base, window = _flash_options(config)
        unsupported = {
            "causal": base.causal,
            "dropout": base.dropout > 0,
            "window": window is not None,
            "kv heads": base.kv_heads != base.n_heads,
        }
        named = [name for name, used in unsupported.items() if used]
        if named:
            raise ConfigError(
                f"the unfused multi-head graph has no {', '.join(named)}; "
                "use FlashAttention for these options"
            )
        self.config = base

    def build_mha_graph(self, graph: EinsumGraph) -> list[int]:
        _require_qkv(graph, "build_mha_graph")
        d_k = self.config.d_k
        q, k, v = _split_heads(graph, d_k, "mha")
        scores = graph.add_tensor("mha_scores")
        graph.add_node(EinsumNode("bhqd,bhkd->bhqk", (q, k), (scores,)))
        scale = graph.add_tensor("mha_scale")  # the seed's placeholder: read by no node
        scaled = graph.add_tensor("mha_scaled_scores")
        root = math.sqrt(d_k)
        root_text = str(int(root)) if root.is_integer() else repr(root)
        graph.add_node(EinsumNode.elem_binary(f"div_scalar_{root_text}", scores, scale, scaled))
        weights = graph.add_tensor("mha_attention_weights")
        graph.add_node(EinsumNode.elem_unary("softmax_k", scaled, weights))
        attended = graph.add_tensor("mha_attn_output")
        graph.add_node(EinsumNode("bhqk,bhkv->bhqv", (weights, v), (attended,)))
        return [_merge_heads(graph, attended, d_k, "mha")]


@dataclass
class FlashAttentionStats:
    config: FlashAttentionConfig
    memory_savings: float
    sram_usage: int
    num_kv_passes: int
    num_q_blocks: int

    @classmethod
    def from_config(cls, config: FlashAttentionConfig, seq_len: int) -> FlashAttentionStats:
        return cls(
            config=replace(config),
            memory_savings=config.memory_savings(seq_len),
            sram_usage=config.sram_usage_per_block(),
            num_kv_passes=config.num_kv_passes(seq_len),
            num_q_blocks=config.num_q_blocks(seq_len),
        )

    def summary(self, seq_len: int) -> str:
        c = self.config
        return (
            "Flash Attention Statistics\n"
            f"  d_model: {c.d_model}\n  n_heads: {c.n_heads}\n"
            f"  block_size_q: {c.block_size_q}\n  block_size_kv: {c.block_size_kv}\n"
            f"  causal: {str(c.causal).lower()}\n"
            f"  memory savings: {self.memory_savings * 100:.1f}%\n"
            f"  SRAM usage: {self.sram_usage} elements\n"
            f"  num_kv_passes: {self.num_kv_passes}\n  num_q_blocks: {self.num_q_blocks}\n"
            f"  seq_len: {seq_len}"
        )


class FlashAttentionPreset(enum.Enum):
    STANDARD = ((128, 128), "Standard")
    LARGE_BLOCKS = ((256, 256), "Large Blocks")
    SMALL_BLOCKS = ((64, 64), "Small Blocks")
    A100_OPTIMIZED = ((128, 64), "A100 Optimized")
    H100_OPTIMIZED = ((128, 128), "H100 Optimized")

    def block_sizes(self) -> tuple[int, int]:
        return self.value[0]

    @property
    def display_name(self) -> str:
        """The seed's `name()`: "Standard", "A100 Optimized", ..."""
        return self.value[1]

    def config(self, d_model: int, n_heads: int) -> FlashAttentionConfig:
        block_q, block_kv = self.block_sizes()
        return FlashAttentionConfig(d_model, n_heads).with_block_sizes(block_q, block_kv)
