"""Attention over packed rows that costs what the examples cost: each example attends only to itself.

transformers reads restarting position ids as packed examples and builds a block-diagonal mask, but SDPA then still
computes the whole row x row score matrix: with 8 examples in a row that is 8x the attention FLOPs of running them
apart, and a dense mask rules out the flash kernel. This attention function runs each example as its own causal
block instead: torch's variable-length flash kernel (torch.nn.attention.varlen) on GPU, or one causal SDPA call per
example elsewhere. The per-example lengths come from the collator (`seq_lens`, Python ints: no device sync).
Registered under ATTENTION; a call without `seq_lens` (padded batches, generation) is plain SDPA with its mask.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

import torch

ATTENTION = "ptft_varlen"


@functools.lru_cache(maxsize=1)
def _flash_varlen():
    """torch's varlen flash attention and whether it takes window_size (2.12+) or is_causal (2.10, 2.11).
    Looked up once: every attention call of every layer asks."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, False
    return varlen_attn, "window_size" in inspect.signature(varlen_attn).parameters


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    seq_lens: list[int] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """query, key, value: (1, heads, tokens, head_dim) of one packed row; returns (1, tokens, heads, head_dim)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if seq_lens is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if query.shape[0] != 1 or sum(seq_lens) != query.shape[2]:
        raise ValueError(f"packed attention: seq_lens {seq_lens} do not tile a row of shape {tuple(query.shape)}")
    gqa = key.shape[1] != query.shape[1]
    varlen_attn, has_window = _flash_varlen()
    flash_dtype = query.dtype if query.dtype in (torch.float16, torch.bfloat16) else None
    if flash_dtype is None and query.is_cuda and torch.is_autocast_enabled("cuda"):
        flash_dtype = torch.get_autocast_dtype("cuda")  # RoPE in fp32 can promote q and k; autocast would cast back
    if varlen_attn is not None and query.is_cuda and dropout == 0.0 and flash_dtype is not None:
        query, key, value = (t.to(flash_dtype) for t in (query, key, value))
        offsets = [0]
        for n in seq_lens:
            offsets.append(offsets[-1] + n)
        cu = torch.tensor(offsets, dtype=torch.int32).to(query.device, non_blocking=True)
        causal = {"window_size": (-1, 0)} if has_window else {"is_causal": True}
        extra = {"enable_gqa": True} if gqa else {}
        if scaling is not None and abs(scaling - query.shape[-1] ** -0.5) > 1e-9:
            extra["scale"] = scaling  # named only when not the default: older torch releases lack the argument
        try:
            out = varlen_attn(
                query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1),
                cu, cu, max(seq_lens), max(seq_lens), **causal, **extra,
            )  # fmt: skip
            return out.unsqueeze(0), None
        except torch.cuda.OutOfMemoryError:
            raise
        except (TypeError, RuntimeError) as err:  # a torch whose varlen kernel takes other arguments or dtypes
            _warn_once(f"torch varlen attention failed ({err}); running one SDPA call per example instead")
    parts, start = [], 0
    for n in seq_lens:
        end = start + n
        parts.append(
            torch.nn.functional.scaled_dot_product_attention(
                query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                is_causal=True, dropout_p=dropout, scale=scaling, enable_gqa=gqa,
            )  # fmt: skip
        )
        start = end
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def register() -> str:
    """Make ATTENTION known to transformers (idempotent); returns its name for attn_implementation."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, varlen_attention_forward)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # unpacked calls fall back to SDPA with its usual mask
    return ATTENTION
