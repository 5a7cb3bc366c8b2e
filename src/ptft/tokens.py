"""How a (context, continuation) pair of texts becomes token ids: one rule, lm-evaluation-harness's, that fine-tuning
(the prompt and the completion it supervises) and evaluation (the continuation lm-eval scores) both call.
"""

from __future__ import annotations

from typing import Any


def _prefix_token_id(tokenizer: Any) -> int | None:
    # lm-eval 0.4.13 lm_eval/models/huggingface.py lines 611-617, HFLM.prefix_token_id: BOS if the tokenizer has
    # one, else EOS (ptft never passes a custom prefix_token_id).
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def encode_text(
    tokenizer: Any, text: str, add_bos_token: bool | None = None, encoded: dict[str, list[int]] | None = None
) -> list[int]:
    """Token ids of one text as lm-eval's HFLM.tok_encode makes them (lm-eval 0.4.13, lm_eval/models/huggingface.py
    lines 1040-1062, with lm_eval/models/utils.py _add_special_kwargs and has_bos_prefix).

    add_bos_token None (HFLM's default, ptft's) leaves the choice to the tokenizer: `tokenizer.encode(text)` with its
    default add_special_tokens=True, so a tokenizer whose post-processor adds BOS (Llama-2, Llama-3) adds it and a
    plain byte-level BPE adds nothing; True/False force add_special_tokens. A text that already starts with the BOS
    string (the decoded prefix token) gets no second one.
    encoded, if given, memoises the result (text -> ids) across calls for texts that recur (the context every
    candidate of an item shares); the ids returned are always a fresh list.
    """
    if encoded is not None:
        if text not in encoded:
            encoded[text] = encode_text(tokenizer, text, add_bos_token)
        return list(encoded[text])
    kwargs = {} if add_bos_token is None else {"add_special_tokens": bool(add_bos_token)}
    prefix = _prefix_token_id(tokenizer)
    if prefix is not None and text.startswith(tokenizer.decode(prefix)):
        kwargs["add_special_tokens"] = False
    return list(tokenizer.encode(text, **kwargs))


def encode_pair(
    tokenizer: Any,
    context: str,
    continuation: str,
    add_bos_token: bool | None = None,
    encoded: dict[str, list[int]] | None = None,
) -> tuple[list[int], list[int]]:
    """(context_ids, continuation_ids) of a pair, split exactly as lm-eval scores it; shapes: two flat id lists.

    The rule is lm-eval 0.4.13's LM._encode_pair for causal models (lm_eval/api/model.py lines 393-431): trailing
    whitespace of the context moves to the start of the continuation; context + continuation is encoded whole and
    the context alone, both with encode_text (so BOS, where the tokenizer adds it, leads the context); the
    continuation is what follows the context's length in the whole encoding. So a SentencePiece tokenizer's
    "▁neutral" after "Inference:" is one token, not ["▁", "▁neutral"] as encoding " neutral" alone would give.
    An empty context is lm-eval's loglikelihood() case (same file, lines 455-464): the continuation is encoded
    without special tokens and the prefix token (BOS, else EOS) is the context, unless the continuation starts
    with it. Raises ValueError when the tokenizer has neither BOS nor EOS and the context is empty.
    encoded, if given, memoises the context's encoding across calls (encode_text's memo): the candidates of one
    item share it.
    """
    if context == "":
        continuation_ids = list(tokenizer.encode(continuation, add_special_tokens=False))
        prefix = _prefix_token_id(tokenizer)
        if prefix is None:
            raise ValueError("an empty context needs a BOS or EOS token to stand for it; the tokenizer has neither")
        if continuation_ids and continuation_ids[0] == prefix:
            return continuation_ids[:1], continuation_ids[1:]
        return [prefix], continuation_ids
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode_text(tokenizer, context + continuation, add_bos_token)
    context_ids = encode_text(tokenizer, context, add_bos_token, encoded)
    return context_ids, whole[len(context_ids) :]


# The names model configs give their context length, in the order read. transformers' own configs:
# max_position_embeddings (Llama, OLMo, GPT-NeoX, ...), n_positions (GPT-2, GPT-J, CodeGen), max_seq_len (MPT),
# n_ctx (older GPT-2 configs), seq_length (ChatGLM, Qwen-1 configs), max_sequence_length (some remote-code configs).
# A multimodal config keeps them in text_config. lm-eval reads only n_positions, max_position_embeddings and n_ctx
# (lm_eval/models/utils.py resolve_max_length) and otherwise assumes 2048 tokens, so ptft passes the number itself.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "n_ctx", "seq_length", "max_sequence_length")


def context_length(config: Any, where: str = "the model config", tokenizer: Any = None) -> tuple[int, str]:
    """(tokens, source): the longest sequence a model takes, from whichever CONTEXT_KEYS name its config uses
    (source "config.<key>"), else from the tokenizer's model_max_length when that is a real number and not
    transformers' "no limit" sentinel (source "tokenizer.model_max_length"), the order lm-eval's resolve_max_length
    reads them in (lm_eval/models/utils.py).

    config: a transformers PretrainedConfig (or any object with those attributes; a dict is read by key); a config
    with text_config is read there first. where names the config in the error. Raises ValueError naming `where` and
    the keys looked for when neither the config nor the tokenizer gives a length (no silent 2048).
    """
    layers = [getattr(config, "text_config", None), config]
    for layer in (layer for layer in layers if layer is not None):
        for key in CONTEXT_KEYS:
            value = layer.get(key) if isinstance(layer, dict) else getattr(layer, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value, f"config.{key}"
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**12:  # transformers' sentinel is int(1e30)
        return limit, "tokenizer.model_max_length"
    raise ValueError(
        f"{where} gives no context length: none of {', '.join(CONTEXT_KEYS)} is set (and the tokenizer sets no "
        f"model_max_length); add the model's context length to its config.json as max_position_embeddings"
    )
