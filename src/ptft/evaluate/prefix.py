"""A prompt prefix shared by one task's items (the fixed shots of evaluate.fewshot_source train_fixed), run once and
reused: every item of an lm-eval task (eval set x format x shots) is scored against the prefix's cached keys and
values (transformers' DynamicCache, copied and batch-expanded per batch) instead of running the whole prompt again.

Inside lm-eval's HFLM (with_shared_prefix subclasses it): its own batching, truncation, logits slicing, one-token
continuation cache, stop criteria and decoding run unchanged; only the model call sees the prefix cut off.
- log-likelihood (whole label words and TokenProb's one-token continuations): HFLM._model_call returns the logits of
  the positions after the prefix, which HFLM's own slicing accepts (its "virtual tokens" arithmetic, ctx_len =
  inplen + logits length - padded length, lm_eval/models/huggingface.py _loglikelihood_tokens).
- greedy generation: each row is rebuilt as prefix + left-padded rest with its attention mask, and
  transformers' generate() continues from the cached prefix (its documented prompt-reuse pattern).
The prefix is the longest run of token ids every prompt of the task starts with (shared_prefix), so it is a true
prefix of each prompt's ids by construction, whatever the tokenizer merges; an item whose ids do not start with it
(cut from the left to fit, or shorter than the prefix + 1) runs whole and is counted as a fallback.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from typing import Any, Sequence

log = logging.getLogger(__name__)

# A prefix shorter than this is not worth a cache copy per batch (a format's template start, when shots differ).
MIN_SHARED_TOKENS = 16


def shared_prefix(sequences: Sequence[Sequence[int]], min_tokens: int = MIN_SHARED_TOKENS) -> tuple[int, ...]:
    """The longest run of token ids that every sequence starts with, cut so each sequence keeps at least one token
    after it (the position whose logits score the first continuation token); () when there are fewer than two
    distinct sequences or the run is shorter than min_tokens. sequences: lists of token ids (prompts)."""
    distinct = {tuple(s) for s in sequences}
    if len(distinct) < 2:
        return ()
    first, last = min(distinct), max(distinct)  # the common prefix of all is that of the lexicographic extremes
    n = 0
    for a, b in zip(first, last):
        if a != b:
            break
        n += 1
    n = min(n, min(len(s) for s in distinct) - 1)
    return first[:n] if n >= min_tokens else ()


def prefix_groups(sequences: Sequence[Sequence[int]], min_tokens: int = MIN_SHARED_TOKENS) -> list[list[int]]:
    """Indices of `sequences` (prompts' token ids) in groups that start with at least min_tokens common ids: in
    lexicographic order, a prompt joins the group before it while it shares min_tokens ids with all of it. One
    eval set x format's prompts form one group with fixed shots; where evaluate.shots_overflow dropped the first
    shots of long prompts, those that kept the same shots form their own group. Every index is in one group."""
    order = sorted(range(len(sequences)), key=lambda i: tuple(sequences[i]))
    groups: list[list[int]] = []
    common: Sequence[int] = ()
    for i in order:
        seq = sequences[i]
        n = 0
        for a, b in zip(common, seq):
            if a != b:
                break
            n += 1
        if groups and n >= min_tokens:
            groups[-1].append(i)
            common = common[:n]
        else:
            groups.append([i])
            common = seq
    return groups


class PrefixCache:
    """One prefix's keys and values (a DynamicCache from one forward pass), handed out as fresh batch-expanded
    copies: generate() and the model's forward extend a cache in place, so the original is never given away."""

    def __init__(self, model, prefix: tuple[int, ...], device):
        import torch

        self.prefix = prefix
        ids = torch.tensor([prefix], dtype=torch.long, device=device)
        with torch.no_grad():
            self._cache = model(input_ids=ids, use_cache=True).past_key_values

    def __len__(self) -> int:
        return len(self.prefix)

    def static(self, batch: int, max_cache_len: int, config):
        """A transformers StaticCache of max_cache_len positions for `batch` rows, its first positions holding the
        prefix's keys and values: greedy decoding then writes in place, which a compiled step needs (transformers'
        generate compiles the forward of a static cache on a GPU)."""
        from transformers import StaticCache

        cache = StaticCache(config=config, max_cache_len=max_cache_len)
        for index, layer in enumerate(self._cache.layers):
            keys, values = layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1)
            cache.update(keys.contiguous(), values.contiguous(), index)
        return cache

    def expanded(self, batch: int):
        """A copy of the cache for `batch` rows (DynamicCache.batch_repeat_interleave)."""
        cache = copy.deepcopy(self._cache)
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        return cache


class SharedPrefixMixin:
    """The methods with_shared_prefix adds to an HFLM class (see there); counts in prefix_stats."""

    prefix_stats: Counter
    _prefix: PrefixCache | None = None

    def loglikelihood(self, requests, disable_tqdm=False):
        return self._per_task(super().loglikelihood, requests, disable_tqdm)

    def generate_until(self, requests, disable_tqdm=False):
        return self._per_task(super().generate_until, requests, disable_tqdm)

    def _per_task(self, method, requests, disable_tqdm):
        """method (base's) run once per lm-eval task, results in the requests' order."""
        if not hasattr(self, "prefix_stats"):
            self.prefix_stats = Counter()
        results: list[Any] = [None] * len(requests)
        for indices, contexts in self._groups(requests):
            group = [requests[i] for i in indices]
            self._prefix = self._task_prefix(contexts)
            try:
                out = method(group, disable_tqdm=disable_tqdm)
            finally:
                self._prefix = None
            for i, value in zip(indices, out, strict=True):
                results[i] = value
        return results

    def _groups(self, requests) -> list[tuple[list[int], list[list[int]]]]:
        """(indices of requests, their contexts' ids) by lm-eval task, each task's split by prefix_groups of its
        contexts' ids. A context is encoded once per task however many requests share it (the candidates of one
        item: profiled, encoding every request twice was a tenth of an embedded-study evaluate job)."""
        tasks: dict[Any, list[int]] = {}
        for i, request in enumerate(requests):
            tasks.setdefault(request.task_name, []).append(i)
        groups = []
        for indices in tasks.values():
            encoded: dict[str, list[int]] = {}
            for i in indices:
                if requests[i].args[0] not in encoded:
                    encoded[requests[i].args[0]] = self._prompt_ids(requests[i].args[0])
            contexts = [encoded[requests[i].args[0]] for i in indices]
            groups += [([indices[j] for j in group], [contexts[j] for j in group]) for group in prefix_groups(contexts)]
        return groups

    def _prompt_ids(self, context: str) -> list[int]:
        # without trailing spaces: lm-eval's _encode_pair moves them to the continuation, and the prefix must end
        # before each context's last token
        return self.tok_encode(context.rstrip()) if context.strip() else []

    def _task_prefix(self, contexts: Sequence[Sequence[int]]) -> PrefixCache | None:
        prefix = shared_prefix([ids for ids in contexts if ids])
        if not prefix:
            return None
        self.prefix_stats["prefix_runs"] += 1
        self.prefix_stats["prefix_tokens"] += len(prefix)
        self.prefix_stats["prompt_tokens_shared"] += len(prefix)
        return PrefixCache(self.model, prefix, self.device)

    def _count(self, rows: Sequence[Sequence[int]], shared: bool) -> None:
        lengths = [len(r) for r in rows]
        n_prefix = len(self._prefix) if shared else 0
        self.prefix_stats["shared_inputs" if shared else "whole_inputs"] += len(rows)
        self.prefix_stats["prompt_tokens_whole"] += sum(lengths)
        self.prefix_stats["prompt_tokens_shared"] += sum(lengths) - n_prefix * len(rows)

    def _model_call(self, inps, attn_mask=None, labels=None):
        # log-likelihood: every row of a batch of one task; logits of the positions after the prefix
        import torch

        prefix = self._prefix
        if prefix is None or attn_mask is not None or labels is not None or not self._rows_match(inps):
            self._count_fallback_rows(inps)
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        self._count([row for row in inps.tolist()], shared=True)
        with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                             enabled=self.mixed_precision_dtype is not None):  # fmt: skip
            cache = prefix.expanded(inps.shape[0])
            return self.model(input_ids=inps[:, len(prefix):], past_key_values=cache, use_cache=True).logits

    def _rows_match(self, inps) -> bool:
        import torch

        n = len(self._prefix)
        if inps.shape[1] <= n:
            return False
        head = torch.tensor(self._prefix.prefix, dtype=inps.dtype, device=inps.device)
        return bool((inps[:, :n] == head).all())

    def _count_fallback_rows(self, inps) -> None:
        if hasattr(self, "prefix_stats"):
            self._count(inps.tolist(), shared=False)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        return generate_with_prefix(self, super()._model_generate, context, max_length, stop, generation_kwargs)


def with_shared_prefix(base: type) -> type:
    """`base` (lm-eval's HFLM or a subclass of it: TokenProb's) with each task's shared prompt prefix run once.

    Requests are split by lm-eval task; per task the shared prefix of its prompts (shared_prefix) is run once and
    the task's requests go through base's own loglikelihood/generate_until with that prefix active. Counts land in
    `prefix_stats` (Counter): prefix_runs, prefix_tokens (computed once each), shared_inputs and whole_inputs
    (rows through the model: unique log-likelihood inputs and generation prompts; batch_size auto's probe rows
    count as whole), and prompt tokens computed (prompt_tokens_shared) against those the same rows would compute
    whole (prompt_tokens_whole), padding of log-likelihood batches included."""
    return type(f"SharedPrefix{base.__name__}", (SharedPrefixMixin, base), {})


def generate_with_prefix(lm, generate, context, max_length: int, stop, generation_kwargs: dict):
    """HFLM._model_generate's result for a left-padded batch (context: [batch, width] ids, attention_mask among
    generation_kwargs), with the rows that start with lm's active prefix continued from its cache.

    Those rows are rebuilt as prefix + left-padded rest (the attention mask zero on the padding, so positions and
    attention equal the whole prompt's) and passed to `generate` (base's _model_generate) with a batch-expanded
    copy of the cache (a StaticCache when lm.decode_cache is "static": evaluate.decode_cache); the other rows go
    through `generate` whole (with transformers' static cache when static). Returns [batch, width + new tokens]: each row's
    context as given, then its generated tokens, right-padded with the pad token, which is what HFLM slices."""
    import torch

    kwargs = dict(generation_kwargs)
    mask = kwargs.pop("attention_mask", None)
    if mask is None:
        mask = torch.ones_like(context)
    rows = [row[m.bool()] for row, m in zip(context, mask)]
    prefix, stats = lm._prefix, getattr(lm, "prefix_stats", None)
    n = len(prefix) if prefix is not None else 0
    head = torch.tensor(prefix.prefix if prefix is not None else (), dtype=context.dtype, device=context.device)
    shared = [i for i, r in enumerate(rows) if prefix is not None and len(r) > n and bool((r[:n] == head).all())]
    whole = [i for i in range(len(rows)) if i not in set(shared)]
    new_tokens = max_length - context.shape[1]
    static = getattr(lm, "decode_cache", "dynamic") == "static"
    generated: dict[int, Any] = {}
    if whole:
        extra = {"cache_implementation": "static"} if static else {}
        out = generate(context[whole], max_length, stop, attention_mask=mask[whole], **extra, **kwargs)
        generated.update(zip(whole, out[:, context.shape[1]:]))
        if stats is not None:
            lm._count([rows[i].tolist() for i in whole], shared=False)
    if shared:
        ids, attention = _prefix_rows(head, [rows[i][n:] for i in shared], lm.tokenizer.pad_token_id)
        cache = (prefix.static(len(shared), ids.shape[1] + new_tokens, lm.model.config) if static
                 else prefix.expanded(len(shared)))  # fmt: skip
        out = generate(ids, ids.shape[1] + new_tokens, stop, attention_mask=attention, past_key_values=cache, **kwargs)
        generated.update(zip(shared, out[:, ids.shape[1]:]))
        if stats is not None:
            lm._count([rows[i].tolist() for i in shared], shared=True)
    width = max(g.shape[0] for g in generated.values())
    pad = lm.tokenizer.pad_token_id
    tails = [torch.nn.functional.pad(generated[i], (0, width - generated[i].shape[0]), value=pad) for i in range(len(rows))]
    return torch.cat([context, torch.stack(tails)], dim=1)


def _prefix_rows(head, suffixes, pad_id: int):
    """(ids, attention_mask), [rows, prefix + longest suffix]: the prefix, then each suffix left-padded."""
    import torch

    width = max(s.shape[0] for s in suffixes)
    ids = torch.full((len(suffixes), head.shape[0] + width), pad_id, dtype=head.dtype, device=head.device)
    attention = torch.zeros_like(ids)
    ids[:, : head.shape[0]] = head
    attention[:, : head.shape[0]] = 1
    for i, suffix in enumerate(suffixes):
        ids[i, ids.shape[1] - suffix.shape[0]:] = suffix
        attention[i, ids.shape[1] - suffix.shape[0]:] = 1
    return ids, attention
