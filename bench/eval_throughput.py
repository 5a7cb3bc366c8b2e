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

import torch  # noqa: E402

from ptft import evaluate as ev  # noqa: E402
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


def build_model(folder: Path, shape: str = "tiny") -> None:
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
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "provenance.json").write_text(json.dumps({"model": "bench", "step": 0, "tokens": 0}))


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


def authors_loop(model_dir: Path, eval_sets: dict, prompts: dict[str, list[str]], threads: int) -> int:
    """One item at a time: generate the answer, then score it (as the authors' evaluation script did)."""
    torch.set_num_threads(threads)
    model, tokenizer = ev._load_model(model_dir)
    n = 0
    with torch.inference_mode():
        for name, spec in sorted(eval_sets.items()):
            family = get_task(spec["task"])
            for prompt, record in zip(prompts[name], ev.read_jsonl(spec["test"])):
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
                        full = torch.cat([ids["input_ids"], word_ids["input_ids"].to(model.device)], dim=1)
                        logprobs = model(full).logits.log_softmax(-1)[0, ids["input_ids"].shape[1] - 1 : -1]
                        loglikelihoods.append(float(logprobs.gather(1, word_ids["input_ids"][0, :, None]).sum()))
                    ev.accuracy(ev.choose_label(loglikelihoods, family.label_words), family.target(record))
                else:
                    ev.rouge_l(text.split("\n")[0], family.target(record))
                n += 1
    return n


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few items per eval set (smoke test)")
    parser.add_argument("--items", type=int, default=128, help="test items per eval set")
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="model shape (olmo-1b: for a GPU)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternate both ways this many times and keep each one's fastest run"
    )
    args = parser.parse_args(argv)
    items = 4 if args.quick else args.items
    logging.disable(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="ptft-bench-") as tmp:
        root = Path(tmp)
        (root / "model").mkdir()
        build_model(root / "model", args.shape)
        eval_sets = build_eval_sets(root / "data", items, SHAPES[args.shape]["document_words"])
        cfg = {
            "prompt_formats": ["default"],
            "shots": [args.shots],
            "limit": None,
            "batch_size": args.batch_size,
            "fewshot_seed": 1234,
            "bootstrap_resamples": 1000,
        }

        # Imports are a one-time cost of any process (a few seconds: lm-eval, datasets, nltk via rouge-score); pay
        # them before either clock starts.
        import lm_eval.evaluator  # noqa: F401
        from lm_eval.api.task import ConfigurableTask  # noqa: F401
        from transformers import AutoTokenizer

        ev.rouge_l("warm", "up")

        started = time.perf_counter()
        ev.evaluate(root / "model", eval_sets, cfg, root / "eval.json", root / "predictions.jsonl", args.threads)
        ours_s = time.perf_counter() - started
        ours_n = len(ev.read_jsonl(root / "predictions.jsonl"))

        # The baseline scores exactly the prompts our run rendered (same shots, same items, the same
        # evaluate.shots_overflow policy, drop_shots, for a prompt over the context).
        tokenizer = AutoTokenizer.from_pretrained(root / "model")
        context = SHAPES[args.shape]["architecture"]["max_position_embeddings"]
        prompts = {name: [] for name in eval_sets}
        for name, spec in eval_sets.items():
            family = get_task(spec["task"])
            dataset = ev.load_eval_set(name, spec)
            config = ev.task_config(name, family, "default", args.shots, dataset)
            budget = ev._prompt_budget(context, family, tokenizer)
            task = ev.fitting_task(config, policy="drop_shots", budget=budget, tokenizer=tokenizer, family=family)
            task.set_fewshot_seed(1234)
            prompts[name] = [task.fewshot_context(doc, args.shots) for doc in dataset["test"]]
            first = json.loads((root / "eval.json").read_text())["example_prompts"][f"{name}/default/{args.shots}"]
            assert prompts[name][0] == first, "the baseline must score the prompts our evaluator scored"
            assert FEWSHOT_DELIMITER in first or args.shots == 0

        theirs_s = float("inf")
        for repeat in range(args.repeats):
            if repeat:  # alternate, so a burst of load from elsewhere hits both ways alike
                started = time.perf_counter()
                ev.evaluate(root / "model", eval_sets, cfg, root / "eval.json", root / "predictions.jsonl", args.threads)
                ours_s = min(ours_s, time.perf_counter() - started)
            started = time.perf_counter()
            theirs_n = authors_loop(root / "model", eval_sets, prompts, args.threads)
            theirs_s = min(theirs_s, time.perf_counter() - started)

    report = {
        "items": ours_n,
        "ours_examples_per_s": ours_n / ours_s,
        "authors_examples_per_s": theirs_n / theirs_s,
        "ours_s": ours_s,
        "authors_s": theirs_s,
        "threads": args.threads,
        "shape": args.shape,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    report["ratio"] = report["ours_examples_per_s"] / report["authors_examples_per_s"]
    print(
        f"{ours_n} items ({items} per eval set x nli, summarisation; {args.shots}-shot; {args.shape} model; "
        f"{report['device']}, "
        f"{args.threads} threads)\n"
        f"ours (ptft.evaluate, batch {args.batch_size}): {report['ours_examples_per_s']:.2f} examples/s "
        f"({ours_s:.1f} s, model load included)\n"
        f"authors (one item at a time): {report['authors_examples_per_s']:.2f} examples/s ({theirs_s:.1f} s)\n"
        f"ratio: {report['ratio']:.1f}x"
    )
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
