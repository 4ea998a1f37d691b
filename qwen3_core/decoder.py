"""Internal: the Qwen3 decoder in plain torch: the same operations, in the same order, as
transformers' ``Qwen3Model`` with SDPA attention, without importing transformers.

Importing transformers' Qwen3 modelling code takes about 4.5 s (it pulls in torch._dynamo,
torch.distributed and scipy), two thirds of a cold start on CPU; the model itself is a few
dozen lines. So CPU engines run this decoder, built straight from the safetensors files
(``qwen3_core.loading``); anything it does not cover (another RoPE, sliding windows,
``model_kwargs``, GPUs) is loaded by transformers as before. tests/test_decoder.py checks it
against transformers on every checkpoint variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

KVCache = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer, the keys and values (batch, key/value heads, positions, head dim)."""


@dataclass(frozen=True)
class DecoderConfig:
    """The settings of a Qwen3 decoder that its forward pass reads."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    attention_bias: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DecoderConfig | None:
        """The settings of a config.json, or None where this decoder would compute another
        function than transformers' (or where transformers would fill in a default)."""
        rope = config.get("rope_parameters")
        theta = config.get("rope_theta")
        if isinstance(rope, dict):
            if set(rope) - {"rope_type", "rope_theta"} or rope.get("rope_type", "default") != (
                "default"
            ):
                return None
            theta = rope.get("rope_theta", theta)
        elif rope is not None:
            return None
        scaling = config.get("rope_scaling")
        if scaling is not None and (
            not isinstance(scaling, dict)
            or scaling.get("rope_type", scaling.get("type", "default")) != "default"
        ):
            return None
        layer_types = config.get("layer_types")
        if (
            config.get("use_sliding_window")
            or (layer_types is not None and set(layer_types) != {"full_attention"})
            or config.get("hidden_act", "silu") != "silu"
        ):
            return None
        names = (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "vocab_size",
        )
        if not all(isinstance(config.get(n), int) for n in names) or not isinstance(
            theta, int | float
        ):
            return None
        eps = config.get("rms_norm_eps", 1e-6)
        return cls(
            **{n: int(config[n]) for n in names},
            rms_norm_eps=float(eps),
            rope_theta=float(theta),
            attention_bias=bool(config.get("attention_bias", False)),
        )


class DecoderOutput(NamedTuple):
    last_hidden_state: torch.Tensor
    """(batch, positions, hidden), after the final norm."""
    cache: KVCache | None
    """Each layer's keys and values, prefix included, when asked for."""


class RMSNorm(torch.nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class TokenEmbedding(torch.nn.Module):
    """The token embedding table, kept in its checkpoint dtype (the loader reads its rows
    from the file as they are first looked up: ``qwen3_core.weights.FileTokenEmbedding``);
    rows are cast to the model's dtype as they are looked up, which gives the same values as
    casting the whole table first."""

    def __init__(self, table: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(table, requires_grad=False)
        self.dtype = dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight).to(self.dtype)

    def extra_repr(self) -> str:
        rows, width = self.weight.shape
        return f"{rows}, {width}, stored as {self.weight.dtype}, looked up as {self.dtype}"


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(torch.nn.Module):
    def __init__(
        self,
        config: DecoderConfig,
        projections: dict[str, torch.nn.Module],
        q_norm: RMSNorm,
        k_norm: RMSNorm,
    ) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = config.head_dim**-0.5
        # Either q_proj, k_proj and v_proj, or one qkv_proj whose rows are theirs, in order.
        if "qkv_proj" in projections:
            self.qkv_proj = projections["qkv_proj"]
            kv_width = config.num_key_value_heads * config.head_dim
            self.widths = [config.num_attention_heads * config.head_dim, kv_width, kv_width]
        else:
            self.q_proj, self.k_proj = projections["q_proj"], projections["k_proj"]
            self.v_proj = projections["v_proj"]
        self.o_proj = projections["o_proj"]
        self.q_norm, self.k_norm = q_norm, k_norm

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if hasattr(self, "qkv_proj"):
            q, k, v = self.qkv_proj(x).split(self.widths, dim=-1)
            return q, k, v
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        batch, length = x.shape[:2]
        shape = (batch, length, -1, self.head_dim)
        q, k, v = self._project(x)
        q = self.q_norm(q.view(shape)).transpose(1, 2)
        k = self.k_norm(k.view(shape)).transpose(1, 2)
        v = v.view(shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = (q * cos) + (_rotate_half(q) * sin)
        k = (k * cos) + (_rotate_half(k) * sin)
        if prefix is not None:
            k = torch.cat([prefix[0].expand(batch, -1, -1, -1), k], dim=-2)
            v = torch.cat([prefix[1].expand(batch, -1, -1, -1), v], dim=-2)
        out = self._attend(q, k, v, past=0 if prefix is None else prefix[0].shape[-2])
        out = out.transpose(1, 2).contiguous().reshape(batch, length, -1).contiguous()
        return self.o_proj(out), (k, v)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int) -> Any:
        # As transformers' SDPA path chooses: the causal kernel (grouped heads in place) when
        # no mask is needed; after a cached prefix, an explicit mask over repeated heads.
        # Causal without a prefix (for one position the same as no mask): decided by a Python
        # int, never a traced shape, so a converted model keeps the causal mask at every length.
        length = q.shape[-2]
        causal = past == 0
        unmasked = causal or length == 1
        if unmasked and (self.groups == 1 or self.head_dim <= 256):
            return F.scaled_dot_product_attention(
                q, k, v, scale=self.scaling, is_causal=causal, enable_gqa=self.groups > 1
            )
        if self.groups > 1:
            k = k.repeat_interleave(self.groups, dim=1)
            v = v.repeat_interleave(self.groups, dim=1)
        if unmasked:
            return F.scaled_dot_product_attention(q, k, v, scale=self.scaling, is_causal=causal)
        rows = torch.arange(length, device=q.device)[:, None] + past
        mask = rows >= torch.arange(past + length, device=q.device)[None, :]
        mask = mask[None, None].expand(q.shape[0], -1, -1, -1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)


class MLP(torch.nn.Module):
    def __init__(self, projections: dict[str, torch.nn.Module]) -> None:
        super().__init__()
        # Either gate_proj and up_proj, or one gate_up_proj whose rows are theirs, in order.
        if "gate_up_proj" in projections:
            self.gate_up_proj = projections["gate_up_proj"]
        else:
            self.gate_proj, self.up_proj = projections["gate_proj"], projections["up_proj"]
        self.down_proj = projections["down_proj"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "gate_up_proj"):
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        out: torch.Tensor = self.down_proj(F.silu(gate) * up)
        return out


class DecoderLayer(torch.nn.Module):
    def __init__(
        self,
        self_attn: Attention,
        mlp: MLP,
        input_layernorm: RMSNorm,
        post_attention_layernorm: RMSNorm,
    ) -> None:
        super().__init__()
        self.self_attn, self.mlp = self_attn, mlp
        self.input_layernorm = input_layernorm
        self.post_attention_layernorm = post_attention_layernorm

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attended, cache = self.self_attn(self.input_layernorm(x), cos, sin, prefix)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), cache


class Qwen3Decoder(torch.nn.Module):
    """A Qwen3 base model (no head): token ids to the final hidden states."""

    inv_freq: torch.Tensor

    def __init__(
        self,
        config: DecoderConfig,
        embed_tokens: TokenEmbedding,
        layers: list[DecoderLayer],
        norm: RMSNorm,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.layers = torch.nn.ModuleList(layers)
        self.norm = norm
        self._dtype = dtype
        dim = config.head_dim
        # As transformers computes it, in float32 whatever the model's dtype.
        self.register_buffer(
            "inv_freq",
            1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)),
            persistent=False,
        )

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def base_model(self) -> Qwen3Decoder:
        """Itself: it has no head (the name transformers' models answer to)."""
        return self

    def get_decoder(self) -> Qwen3Decoder:
        return self

    def get_input_embeddings(self) -> TokenEmbedding:
        return self.embed_tokens

    def forward(
        self, input_ids: torch.Tensor, prefix: KVCache | None = None, use_cache: bool = False
    ) -> DecoderOutput:
        """The hidden states of ``input_ids`` (batch, positions), continuing ``prefix``'s
        positions when given (its batch is 1, shared by every row)."""
        x = self.embed_tokens(input_ids)
        past = 0 if prefix is None else prefix[0][0].shape[-2]
        positions = torch.arange(input_ids.shape[1], device=x.device) + past
        freqs = positions[None, :, None].float() * self.inv_freq.float()
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        cache: KVCache = []
        for index, layer in enumerate(self.layers):
            x, keys_values = layer(x, cos, sin, None if prefix is None else prefix[index])
            if use_cache:
                cache.append(keys_values)
        return DecoderOutput(self.norm(x), cache if use_cache else None)
