"""Evaluation throughput: ptft.evaluate (batched, through lm-eval) vs the authors' one-example-at-a-time loop.

Both score the same random-weight model (the embedded study's architecture) on the same generated NLI and
summarisation items, with the same rendered few-shot prompts; the baseline generates each answer with
model.generate and then scores it (label words by one log-likelihood forward each, summaries by ROUGE-L),
one item at a time, as the authors' code did. Prints examples/s both ways and the ratio.

    python bench/eval_throughput.py                  # 128 items per eval set, 4-shot, batch 64, tiny model
    python bench/eval_throughput.py --quick          # a few items: the smoke test's setting
    python bench/eval_throughput.py --shape olmo-1b  # on a GPU: an OLMo-1B-shaped model (random weights)
                                                     # and XSum-length documents

The OLMo-1B shape is built from its config (no download: the lent GPU machines have no network); throughput does
not depend on the weights' values. Its tokenizer is the small BPE trained here, so documents are sized in words.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ptft import evaluate as ev  # noqa: E402
from ptft.evaluate.models import _load_model  # noqa: E402
from ptft.evaluate.plan import prompt_budget  # noqa: E402
from ptft.finetune import flops_per_token, peak_flops  # noqa: E402
from ptft.metrics import accuracy, rouge_l  # noqa: E402
from ptft.provenance import read_jsonl  # noqa: E402
from ptft.tasks import FEWSHOT_DELIMITER, TARGET_DELIMITER, get_task  # noqa: E402

WORDS = "the a cat dog city river north south person lives in is big small red blue old new near far".split()
# Model shapes: the embedded study's model (params.yaml models.tiny-olmo.architecture), and allenai/OLMo-1B-hf's
# config (2048 wide, 16 layers and heads, MLP 8192, vocabulary 50304, context 2048).
SHAPES = {
    "tiny": {
        "config": "Olmo2Config",
        "architecture": {
            "hidden_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "intermediate_size": 384,
            "max_position_embeddings": 512,
        },
        "document_words": 40,
    },
    "olmo-1b": {
        "config": "OlmoConfig",
        "architecture": {
            "hidden_size": 2048,
            "num_hidden_layers": 16,
            "num_attention_heads": 16,
            "intermediate_size": 8192,
            "max_position_embeddings": 2048,
            "vocab_size": 50304,
            "tie_word_embeddings": True,  # as OLMo-1B: 1.18B parameters
        },
        "document_words": 300,  # 4 shots + the item stay inside the 2048-token context
    },
}


def _sentence(rnd: random.Random, n: int) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(n))


def build_model(folder: Path, shape: str = "tiny") -> float:
    """Writes the bench's random model and tokenizer to folder; returns its matmul parameters (for MFU: scoring a
    token costs 2x these FLOPs, ptft.finetune.flops_per_token's convention, attention left out)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    rnd = random.Random(0)
    templates = [t for task in ("nli", "summarisation") for t in get_task(task).formats.values()]
    corpus = [_sentence(rnd, 12) for _ in range(500)] + templates + list(get_task("nli").label_words)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=1024,
            special_tokens=["<|endoftext|>", "<|padding|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|padding|>")
    torch.manual_seed(0)
    architecture = {"vocab_size": len(tokenizer), **SHAPES[shape]["architecture"]}
    config = getattr(transformers, SHAPES[shape]["config"])(
        **architecture,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "provenance.json").write_text(json.dumps({"model": "bench", "step": 0, "tokens": 0}))
    return flops_per_token(model, "full") / 6


def build_eval_sets(root: Path, n_test: int, document_words: int = 40) -> dict[str, dict]:
    rnd = random.Random(1)
    makers = {
        "bench_nli": (
            "nli",
            lambda: {
                "premise": _sentence(rnd, 12),
                "hypothesis": _sentence(rnd, 8),
                "label": rnd.choice(get_task("nli").label_words),
            },
        ),
        "bench_sum": ("summarisation", lambda: {"document": _sentence(rnd, document_words), "summary": _sentence(rnd, 10)}),
    }
    sets = {}
    for name, (task, make) in makers.items():
        folder = root / name
        folder.mkdir(parents=True)
        for split, n in (("test", n_test), ("train", 40)):
            rows = [{"id": f"{name}-{split}-{i}", **make()} for i in range(n)]
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        sets[name] = {"task": task, "test": folder / "test.jsonl", "train": folder / "train.jsonl"}
    return sets


def authors_loop(model_dir: Path, eval_sets: dict, prompts: dict[str, list[str]], threads: int,
                 dtype: str = "auto") -> int:  # fmt: skip
    """One item at a time: generate the answer, then score it (as the authors' evaluation script did).

    It runs in the same dtype as ours, so the ratio counts batching and one-pass scoring, not arithmetic."""
    torch.set_num_threads(threads)
    model, tokenizer = _load_model(model_dir, dtype=dtype)
    n = 0
    with torch.inference_mode():
        for name, spec in sorted(eval_sets.items()):
            family = get_task(spec["task"])
            for prompt, record in zip(prompts[name], read_jsonl(spec["test"])):
                ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
                generated = model.generate(
                    **ids,
                    max_new_tokens=family.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
                text = tokenizer.decode(generated[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
                if family.kind == "classification":
                    loglikelihoods = []
                    for word in family.label_words:
                        word_ids = tokenizer(TARGET_DELIMITER + word, return_tensors="pt", add_special_tokens=False)
                        word_ids = word_ids.to(model.device)
                        full = torch.cat([ids["input_ids"], word_ids["input_ids"]], dim=1)
                        logprobs = model(full).logits.log_softmax(-1)[0, ids["input_ids"].shape[1] - 1 : -1]
                        loglikelihoods.append(float(logprobs.gather(1, word_ids["input_ids"][0, :, None]).sum()))
                    accuracy(ev.choose_label(loglikelihoods, family.label_words), family.target(record))
                else:
                    rouge_l(text.split("\n")[0], family.target(record))
                n += 1
    return n


KINDS = {"classification": "bench_nli", "generation": "bench_sum"}


def _prompts(eval_sets: dict, root: Path, shots: int, fewshot_source: str = "train") -> dict[str, list[str]]:
    """The k-shot prompts our evaluator scored, rebuilt through the same lm-eval task config (checked equal)."""
    from transformers import AutoTokenizer

    # The same evaluate.shots_overflow policy (drop_shots) as ours, for a prompt over the context.
    tokenizer = AutoTokenizer.from_pretrained(root / "model")
    context = json.loads((root / "model" / "config.json").read_text())["max_position_embeddings"]
    prompts = {}
    for name, spec in eval_sets.items():
        family = get_task(spec["task"])
        dataset = ev.load_eval_set(name, spec)
        config = ev.task_config(name, family, "default", shots, dataset, fewshot_source=fewshot_source, fewshot_seed=1234)
        budget = prompt_budget(context, family, tokenizer)
        task = ev.fitting_task(config, policy="drop_shots", budget=budget, tokenizer=tokenizer, family=family)
        task.set_fewshot_seed(1234)
        prompts[name] = [task.fewshot_context(doc, shots) for doc in dataset["test"]]
        first = json.loads((root / f"eval-{name}.json").read_text())["example_prompts"][f"{name}/default/{shots}"]
        assert prompts[name][0] == first, "the baseline must score the prompts our evaluator scored"
        assert FEWSHOT_DELIMITER in first or shots == 0
    return prompts


def _token_counts(model_dir: Path, rows: list[dict], kind: str) -> dict[str, int]:
    """Prompt tokens scored and tokens generated (greedy answers, re-tokenised) in one run's prediction rows: what
    bench/figures.yaml's evaluate_prompt_tokens_per_s and evaluate_generated_tokens_per_s count."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generated = 0
    if kind == "generation":
        generated = sum(len(ids) for ids in tokenizer([r["prediction"] for r in rows], add_special_tokens=False)["input_ids"])
    return {"prompt_tokens": sum(r["prompt_tokens"] for r in rows), "generated_tokens": generated}


def _ours(root: Path, eval_sets: dict, cfg: dict, threads: int, tag: str = "") -> tuple[float, int]:
    """(seconds, items) of one ptft.evaluate run, model load included."""
    name = "-".join(sorted(eval_sets)) if len(eval_sets) > 1 else next(iter(eval_sets))
    started = time.perf_counter()
    ev.evaluate(root / "model", eval_sets, cfg, root / f"eval-{name}{tag}.json", root / f"pred-{name}{tag}.jsonl", threads)
    return time.perf_counter() - started, len(read_jsonl(root / f"pred-{name}{tag}.jsonl"))


def _sharing(root: Path, name: str) -> dict[str, int]:
    """Prompt tokens one run computed with its shared prefixes and those the whole prompts would have cost (the
    model's counts, ptft.evaluate.prefix; padding included), from its results' provenance; {} without sharing."""
    stats = json.loads((root / f"eval-{name}.json").read_text())["provenance"].get("shared_prefix", {})
    return {"prompt_tokens_computed_shared": stats.get("prompt_tokens_shared", 0),
            "prompt_tokens_computed_whole": stats.get("prompt_tokens_whole", 0),
            "prefix_runs": stats.get("prefix_runs", 0), "whole_inputs": stats.get("whole_inputs", 0)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few items per eval set (smoke test)")
    parser.add_argument("--items", type=int, default=128, help="test items per eval set")
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="model shape (olmo-1b: for a GPU)")
    parser.add_argument("--classification", choices=ev.CLASSIFICATION_METHODS, default="token_prob",
                        help="how ours scores classification (token_prob: the paper's, one pass per item)")
    parser.add_argument("--dtype", choices=ev.EVAL_DTYPES, default="auto", help="evaluate.dtype of ours")
    parser.add_argument("--vllm", action="store_true",
                        help="also run generation through evaluate.backend vllm (needs vllm: GPU env only)")
    parser.add_argument("--ours-only", action="store_true",
                        help="skip the authors' loop: ours' token rates at a scale the one-at-a-time loop cannot reach")
    parser.add_argument("--no-stop", action="store_true",
                        help="generate to max_new_tokens (the paper's protocol: evaluate.stop_sequences empty)")
    parser.add_argument("--fewshot-source", choices=ev.task_configs.FEWSHOT_SOURCES, default="train_fixed",
                        help="evaluate.fewshot_source (train_fixed: the paper config's, one shared prefix per set)")
    parser.add_argument("--decode-cache", choices=("dynamic", "static"), default="dynamic",
                        help="evaluate.decode_cache (static: a StaticCache, its decoding step compiled on a GPU)")
    parser.add_argument("--unshared", action="store_true",
                        help="also time ours with evaluate.share_prefix false (every prompt run whole)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternate both ways this many times and keep each one's fastest run"
    )
    args = parser.parse_args(argv)
    items = 4 if args.quick else args.items
    logging.disable(logging.WARNING)

    report: dict = {"threads": args.threads, "shape": args.shape, "shots": args.shots,
                    "device": "cuda" if torch.cuda.is_available() else "cpu", "classification": args.classification,
                    "dtype": ev.resolve_dtype(args.dtype, "cuda" if torch.cuda.is_available() else "cpu"),
                    "kinds": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ptft-bench-") as tmp:
        root = Path(tmp)
        (root / "model").mkdir()
        report["matmul_parameters"] = build_model(root / "model", args.shape)
        peak = peak_flops()
        eval_sets = build_eval_sets(root / "data", items, SHAPES[args.shape]["document_words"])
        cfg = {
            "prompt_formats": ["default"],
            "shots": [args.shots],
            "limit": None,
            "batch_size": args.batch_size,
            "fewshot_seed": 1234,
            "fewshot_source": args.fewshot_source,
            "decode_cache": args.decode_cache,
            "bootstrap_resamples": 1000,
            "classification": args.classification,
            "dtype": args.dtype,
            "stop_sequences": {"summarisation": []} if args.no_stop else {},
        }

        # Imports are a one-time cost of any process (a few seconds: lm-eval, datasets, nltk via rouge-score); pay
        # them before either clock starts.
        import lm_eval.evaluator  # noqa: F401

        rouge_l("warm", "up")

        # Each task kind alone, both ways, alternating; then ours on both kinds in one run (what a rule does).
        for kind, name in KINDS.items():
            one = {name: eval_sets[name]}
            ours_s, theirs_s = float("inf"), float("inf")
            for _ in range(args.repeats):
                seconds, ours_n = _ours(root, one, cfg, args.threads)
                ours_s = min(ours_s, seconds)
                if args.ours_only:
                    theirs_n, theirs_s = ours_n, float("nan")
                    continue
                prompts = _prompts(one, root, args.shots, args.fewshot_source)
                started = time.perf_counter()
                theirs_n = authors_loop(root / "model", one, prompts, args.threads, args.dtype)
                theirs_s = min(theirs_s, time.perf_counter() - started)
            rows = read_jsonl(root / f"pred-{name}.jsonl")
            tokens = {**_token_counts(root / "model", rows, kind), **_sharing(root, name)}
            if args.unshared:
                tokens["ours_unshared_s"] = min(_ours(root, one, {**cfg, "share_prefix": False}, args.threads, "-whole")[0]
                                                for _ in range(args.repeats))  # fmt: skip
            report["kinds"][kind] = {"items": ours_n, "ours_s": ours_s, "authors_s": theirs_s, **tokens,
                                     "ours_prompt_tokens_per_s": tokens["prompt_tokens"] / ours_s,
                                     "ours_generated_tokens_per_s": tokens["generated_tokens"] / ours_s,
                                     "ours_examples_per_s": ours_n / ours_s,
                                     "authors_examples_per_s": theirs_n / theirs_s,
                                     "ratio": (ours_n / ours_s) / (theirs_n / theirs_s),
                                     # of the prompt tokens the model computed (each shared prefix once); a lower
                                     # bound: the time includes the model load and any decoding
                                     "ours_prompt_mfu": (2 * report["matmul_parameters"]
                                                         * tokens["prompt_tokens_computed_shared"] / ours_s / peak)
                                                        if peak else None}  # fmt: skip
            if kind == "generation" and args.vllm:
                seconds, n = _ours(root, one, {**cfg, "backend": "vllm", "batch_size": "auto"}, args.threads, "-vllm")
                hf = {r["doc_id"]: r["score"] for r in read_jsonl(root / f"pred-{name}.jsonl")}
                vl = {r["doc_id"]: r["score"] for r in read_jsonl(root / f"pred-{name}-vllm.jsonl")}
                report["kinds"][kind].update(
                    vllm_s=seconds, vllm_examples_per_s=n / seconds, vllm_vs_hf=(n / seconds) / (ours_n / ours_s),
                    vllm_mean_rougeL=float(np.mean(list(vl.values()))), hf_mean_rougeL=float(np.mean(list(hf.values()))),
                    vllm_same_score_share=float(np.mean([abs(vl[k] - hf[k]) < 1e-9 for k in hf])),
                )
        both_s, both_n = _ours(root, eval_sets, cfg, args.threads)

    theirs_total = sum(k["authors_s"] for k in report["kinds"].values())
    ours_total = sum(k["ours_s"] for k in report["kinds"].values())
    n_total = sum(k["items"] for k in report["kinds"].values())
    report.update(items=n_total, ours_s=ours_total, authors_s=theirs_total, ours_one_run_s=both_s,
                  ours_examples_per_s=n_total / ours_total, authors_examples_per_s=n_total / theirs_total,
                  ratio=theirs_total / ours_total, ratio_one_run=theirs_total / both_s)  # fmt: skip
    lines = [f"{n_total} items ({items} per eval set; {args.shots}-shot, shots {args.fewshot_source}; {args.shape} model; {report['device']}, "
             f"{report['dtype']}, {args.threads} threads; classification by {args.classification}; {args.decode_cache} decode cache)"]  # fmt: skip
    for kind, k in report["kinds"].items():
        lines.append(f"{kind:>14}: ours {k['ours_examples_per_s']:.2f}/s ({k['ours_s']:.1f} s, model load included), "
                     f"authors {k['authors_examples_per_s']:.2f}/s ({k['authors_s']:.1f} s): {k['ratio']:.1f}x")  # fmt: skip
        lines.append(f"{'':>14}  prompt tokens computed: {k['prompt_tokens_computed_shared']:,} with shared prefixes "
                     f"({k['prefix_runs']} run once), {k['prompt_tokens_computed_whole']:,} without (padding "
                     f"included); {k['whole_inputs']} inputs ran whole"
                     + (f"; ours without sharing {k['ours_unshared_s']:.1f} s" if "ours_unshared_s" in k else ""))
        lines.append(f"{'':>14}  ours scored {k['ours_prompt_tokens_per_s']:,.0f} prompt tokens/s"
                     + (f", generated {k['ours_generated_tokens_per_s']:,.0f} tokens/s (prompts included in the time)"
                        if kind == "generation" else "")
                     + (f"; prompt MFU {k['ours_prompt_mfu']:.1%} of the tokens computed (a lower bound)"
                        if k["ours_prompt_mfu"] else ""))  # fmt: skip
        if "vllm_s" in k:
            lines.append(f"{'':>14}  vllm {k['vllm_examples_per_s']:.2f}/s = {k['vllm_vs_hf']:.1f}x hf; mean ROUGE-L "
                         f"vllm {k['vllm_mean_rougeL']:.4f} vs hf {k['hf_mean_rougeL']:.4f}; "
                         f"{k['vllm_same_score_share']:.0%} of items scored the same")  # fmt: skip
    lines.append(f"{'total':>14}: ours {report['ours_examples_per_s']:.2f}/s, authors "
                 f"{report['authors_examples_per_s']:.2f}/s: {report['ratio']:.1f}x "
                 f"(both kinds in one ptft.evaluate run: {both_s:.1f} s, {report['ratio_one_run']:.1f}x)")  # fmt: skip
    print("\n".join(lines))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
