"""One tokenisation for training and scoring: the ids fine-tuning supervises are the ids lm-eval scores, for a
byte-level BPE, a SentencePiece-style (Llama-2, `▁`, BOS) and a BOS-adding byte-level (Llama-3) tokenizer."""

from __future__ import annotations

import random

import pytest

from ptft.finetune import IGNORE_INDEX, encode_example
from ptft.tasks import TASKS, get_task
from ptft.tokens import encode_pair

WORDS = "the a cat dog sat on mat man ran park red blue big small house tree river city old young".split()
NLI = get_task("nli")


def _sentence(rnd: random.Random, n: int) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(n))


def nli_records(n: int, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)
    return [{"id": str(i), "premise": _sentence(rnd, 8), "hypothesis": _sentence(rnd, 5),
             "label": rnd.choice(NLI.label_words)} for i in range(n)]  # fmt: skip


def _corpus() -> list[str]:
    rnd = random.Random(1)
    templates = [t for family in TASKS.values() for t in family.formats.values()]
    return [_sentence(rnd, 12) for _ in range(300)] + templates + [" ".join(NLI.label_words)] * 20


def _tokenizer(kind: str):
    """A tokenizer trained here on a small corpus: byte_bpe (GPT-2/OLMo style, no special tokens added),
    sentencepiece (Llama-2 style: `▁` for spaces, one prepended to the text, BOS <s> added),
    bos_bpe (Llama-3 style: byte-level BPE whose post-processor adds <|begin_of_text|>)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "sentencepiece":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        # Llama-2's fast tokenizer: normalizer Prepend("▁") + Replace(" ", "▁"); the Metaspace split keeps BPE
        # merges inside words, so " neutral" alone becomes ["▁", "▁neutral"] as with the real one.
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Strip(" ", 1, 0)])
        specials = ["<unk>", "<s>", "</s>"]
        tok.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False))
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                       pad_token="</s>")  # fmt: skip
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|begin_of_text|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(_corpus(), trainer)
    if kind == "byte_bpe":  # as ptft.checkpoints.train_tokenizer (the embedded study) builds it
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                       pad_token="<|endoftext|>")  # fmt: skip
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 1)]),
    ])  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")  # fmt: skip


KINDS = ("byte_bpe", "sentencepiece", "bos_bpe")


@pytest.fixture(scope="module")
def tokenizers():
    return {kind: _tokenizer(kind) for kind in KINDS}


@pytest.fixture(scope="module")
def lms(tokenizers):
    """lm-eval's own HFLM on a tiny random model per tokenizer, recording the (context, continuation) ids its
    loglikelihood() hands to the model."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import Olmo2Config, Olmo2ForCausalLM

    class RecordingHFLM(HFLM):
        def _loglikelihood_tokens(self, requests, **kwargs):
            self.seen = [(ctx, cont) for _, ctx, cont in requests]
            return super()._loglikelihood_tokens(requests, **kwargs)

    out = {}
    for kind, tok in tokenizers.items():
        torch.manual_seed(0)
        config = Olmo2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             vocab_size=len(tok), max_position_embeddings=256)  # fmt: skip
        out[kind] = RecordingHFLM(pretrained=Olmo2ForCausalLM(config), tokenizer=tok, batch_size=4, device="cpu")
    return out


def _scored_ids(lm, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    from lm_eval.api.instance import Instance

    requests = [Instance("loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]
    lm.loglikelihood(requests, disable_tqdm=True)
    return [(list(c), list(t)) for c, t in lm.seen]


@pytest.mark.parametrize("kind", KINDS)
def test_training_supervises_the_ids_lm_eval_scores(kind, tokenizers, lms):
    tok, records = tokenizers[kind], nli_records(30)
    pairs = [(NLI.render(r, fmt), NLI.completion(r)) for r in records for fmt in ("default", "instruct")]
    scored = _scored_ids(lms[kind], pairs)
    for (prompt, completion), (context_ids, continuation_ids) in zip(pairs, scored):
        example = encode_example(tok, prompt, completion, max_length=512)
        supervised = [t for t in example.labels if t != IGNORE_INDEX]
        assert supervised == continuation_ids + [tok.eos_token_id], (kind, prompt, completion)
        assert example.input_ids == context_ids + continuation_ids + [tok.eos_token_id]
        assert (context_ids, continuation_ids) == encode_pair(tok, prompt, completion)


def test_sentencepiece_completion_is_one_word_token_not_a_lone_space(tokenizers):
    # the bug of issue 14: encoding " neutral" alone gives ["▁", "▁neutral"]; lm-eval scores ["▁neutral"]
    tok = tokenizers["sentencepiece"]
    alone = tok.convert_ids_to_tokens(tok(" neutral", add_special_tokens=False)["input_ids"])
    _, continuation = encode_pair(tok, "### Inference:", " neutral")
    assert alone[0] == "▁" and tok.convert_ids_to_tokens(continuation) == ["▁neutral"]


@pytest.mark.parametrize("kind", ["sentencepiece", "bos_bpe"])
def test_bos_leads_the_prompt_as_it_leads_lm_evals_context(kind, tokenizers):
    tok = tokenizers[kind]
    example = encode_example(tok, "### Input_1: the cat\n ### Inference:", " neutral", max_length=64)
    assert example.input_ids[0] == tok.bos_token_id and example.input_ids.count(tok.bos_token_id) == 1
    # a text that already starts with BOS gets no second one (lm-eval's has_bos_prefix)
    context, _ = encode_pair(tok, tok.bos_token + "### Inference:", " neutral")
    assert context.count(tok.bos_token_id) == 1


def test_byte_level_bpe_ids_are_those_of_separate_encoding(tokenizers):
    """The embedded study's tokenizer: the shared rule gives exactly the ids training used before (prompt and
    completion encoded apart), for every task family and format, so its numbers do not change."""
    tok, rnd = tokenizers["byte_bpe"], random.Random(3)
    for family in TASKS.values():
        for fmt in family.formats:
            record = {f: _sentence(rnd, 6) for f in (*family.input_fields, *family.optional_fields)}
            record[family.target_field] = family.label_words[0] if family.label_words else _sentence(rnd, 4)
            prompt, completion = family.render(record, fmt), family.completion(record)
            before = (tok(prompt, add_special_tokens=False)["input_ids"], tok(completion, add_special_tokens=False)["input_ids"])
            assert encode_pair(tok, prompt, completion) == before, (family.name, fmt)


def test_trailing_space_of_the_context_moves_to_the_continuation(tokenizers):
    tok = tokenizers["byte_bpe"]
    assert encode_pair(tok, "the cat ", "sat") == encode_pair(tok, "the cat", " sat")
    context, continuation = encode_pair(tok, "", "the cat")  # lm-eval: the prefix token stands for no context
    assert context == [tok.bos_token_id] and continuation == tok("the cat", add_special_tokens=False)["input_ids"]


def test_token_prob_lm_splits_plain_pairs_as_lm_eval_does(tokenizers, lms):
    from ptft.evaluate import token_prob_lm, token_continuation

    tok, lm = tokenizers["sentencepiece"], lms["sentencepiece"]
    ours = token_prob_lm(pretrained=lm.model, tokenizer=tok, batch_size=4, device="cpu")
    for record in nli_records(5):
        pair = (NLI.render(record, "default"), NLI.completion(record))
        assert ours._encode_pair(*pair) == lm._encode_pair(*pair)
    context, token = ours._encode_pair("### Inference:", token_continuation(7))
    assert token == [7] and context == lm.tok_encode("### Inference:")


def test_token_prob_encodes_each_context_once_and_scores_as_before(tokenizers, lms, monkeypatch):
    """All candidate tokens of an item share its context: the context is tokenised once per loglikelihood call, and
    the log-likelihoods are those of the same requests encoded one by one (the cache is gone after the call)."""
    from lm_eval.api.instance import Instance

    from ptft.evaluate import token_continuation, token_prob_lm

    tok, lm = tokenizers["sentencepiece"], lms["sentencepiece"]
    ours = token_prob_lm(pretrained=lm.model, tokenizer=tok, batch_size=4, device="cpu")
    contexts = [NLI.render(record, "default") for record in nli_records(3)]
    candidates = [5, 7, 11, 13]
    requests = [
        Instance("loglikelihood", {}, (context, token_continuation(token)), i)
        for i, (context, token) in enumerate((c, k) for c in contexts for k in candidates)
    ]
    encoded = []  # every text the tokenizer encodes
    real_encode = tok.encode
    monkeypatch.setattr(tok, "encode", lambda text, *a, **k: encoded.append(text) or real_encode(text, *a, **k))
    scores = ours.loglikelihood(requests, disable_tqdm=True)
    assert sorted(encoded) == sorted(contexts)  # 3 encodings for 12 requests
    assert not hasattr(ours, "_encoded_contexts")
    one_by_one = lm._loglikelihood_tokens(
        [((c, str(k)), lm.tok_encode(c), [k]) for c in contexts for k in candidates], disable_tqdm=True
    )
    assert [s for s, _ in scores] == pytest.approx([s for s, _ in one_by_one], abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_conversation_starts_as_the_tokenizer_starts_every_text(kind, tokenizers):
    from ptft.finetune import encode_conversation

    tok = tokenizers[kind]
    messages = [{"role": "user", "content": "the cat sat"}, {"role": "assistant", "content": "on the mat"}]
    example = encode_conversation(tok, messages, max_length=64)
    if kind == "byte_bpe":  # its BOS is its EOS, and it adds neither: the conversation starts with the text
        assert example.input_ids[:2] == tok("<|user|>", add_special_tokens=False)["input_ids"][:2]
    else:
        assert example.input_ids[0] == tok.bos_token_id and example.input_ids.count(tok.bos_token_id) == 1
    assert example.labels[0] == IGNORE_INDEX


@pytest.mark.parametrize("kind", KINDS)
def test_a_conversation_is_encoded_as_one_text_with_labels_from_character_offsets(kind, tokenizers):
    """open-instruct encodes the whole conversation text once; encoding turns apart gives a SentencePiece tokenizer a
    "▁" before every answer and every later role cue (the field report: 65 ids where the whole text gives 61)."""
    from ptft.finetune import encode_conversation

    tok = tokenizers[kind]
    messages = [
        {"role": "user", "content": "the cat sat on the mat"},
        {"role": "assistant", "content": "the dog ran"},
        {"role": "user", "content": "a red house"},
        {"role": "assistant", "content": "the big tree"},
    ]
    text = (f"<|user|>\nthe cat sat on the mat\n<|assistant|>\nthe dog ran{tok.eos_token}\n"
            f"<|user|>\na red house\n<|assistant|>\nthe big tree{tok.eos_token}")  # fmt: skip
    example = encode_conversation(tok, messages, max_length=512)
    assert example.input_ids == tok(text)["input_ids"]
    trained = [t for t in example.labels if t != IGNORE_INDEX]
    offsets = tok(text, return_offsets_mapping=True)["offset_mapping"]
    covered = "".join(text[a:b] for (a, b), label in zip(offsets, example.labels) if label != IGNORE_INDEX)
    assert covered.replace("\n", "") == f"the dog ran{tok.eos_token}the big tree{tok.eos_token}"
    assert trained.count(tok.eos_token_id) == 2 and trained[-1] == tok.eos_token_id
    segments = [  # the old per-turn encoding
        "<|user|>\nthe cat sat on the mat\n", "<|assistant|>\n", "the dog ran", "\n", "<|user|>\na red house\n",
        "<|assistant|>\n", "the big tree",
    ]  # fmt: skip
    apart = [t for seg in segments for t in tok(seg, add_special_tokens=False)["input_ids"]]
    if kind == "sentencepiece":
        # each answer follows a newline: no "▁" of its own, unlike the answer encoded alone
        assert not tok.convert_ids_to_tokens(trained)[0].startswith("▁")
        assert len(example.input_ids) < len(apart) + 3  # + BOS and two EOS


def test_whole_word_candidates_of_an_item_encode_its_context_once(tokenizers, lms, monkeypatch):
    """Plain (label-word) continuations too: each context is tokenised alone once per loglikelihood call, however
    many candidates it has, and the scores are lm-eval's own for the same requests."""
    from lm_eval.api.instance import Instance

    from ptft.evaluate import token_prob_lm

    tok, lm = tokenizers["sentencepiece"], lms["sentencepiece"]
    ours = token_prob_lm(pretrained=lm.model, tokenizer=tok, batch_size=4, device="cpu")
    contexts = [NLI.render(record, "default") for record in nli_records(3)]
    words = [" entailment", " neutral", " contradiction"]
    requests = [Instance("loglikelihood", {}, (c, w), i) for i, (c, w) in enumerate((c, w) for c in contexts for w in words)]
    encoded = []  # every text the tokenizer encodes
    real_encode = tok.encode
    monkeypatch.setattr(tok, "encode", lambda text, *a, **k: encoded.append(text) or real_encode(text, *a, **k))
    scores = ours.loglikelihood(requests, disable_tqdm=True)
    alone = [text for text in encoded if text in {c.rstrip() for c in contexts}]
    assert len(alone) == len(contexts)  # 3 context encodings for 9 requests (plus each whole context + word)
    assert len(encoded) == len(contexts) + len(requests)
    assert not hasattr(ours, "_encoded_contexts")
    theirs = lm.loglikelihood(requests, disable_tqdm=True)
    assert [s for s, _ in scores] == pytest.approx([s for s, _ in theirs], abs=1e-5)
