"""Fine-tuning throughput: ptft.finetune's engine vs the authors' setting, measured in the same run.

Both train the same random-weight model on the same synthetic prompt/completion pairs with XSum-like lengths
(long prompts, short completions; loss on the completion only), for the same number of optimizer steps of the
same effective batch (8 examples):

- ours: ptft.finetune.build_trainer, i.e. the transformers Trainer with the whole effective batch packed
  padding-free into one row per step (position ids restart per example), bf16 autocast and fused AdamW on GPU;
- authors: a plain transformers Trainer with per-device batch 1 and gradient accumulation 8, no packing (the
  paper's recipe; they added DeepSpeed, which on one GPU changes no arithmetic), bf16 on GPU.

Tokens/s counts real (non-padding) tokens of the timed steps, after warm-up steps that are not timed. MFU is
6 x matmul parameters x tokens/s / peak bf16 FLOP/s (ptft.finetune.PEAK_FLOPS, or PTFT_PEAK_FLOPS).

    python bench/finetune_throughput.py --device cuda   # OLMo-1B shape (random weights), 512-token prompts
    python bench/finetune_throughput.py --device cpu    # the embedded study's tiny model
    python bench/finetune_throughput.py --quick         # CPU, a few steps: the smoke test's setting
    python bench/finetune_throughput.py --device cuda --sharding fsdp   # + ours under FSDP (one process) vs none
    python bench/finetune_throughput.py --device cuda --profile PATH   # + where ours' step time goes (torch.profiler)

With --sharding fsdp the same run also trains ours wrapped in FSDP (finetune.sharding: fsdp, one process, so it
shards nothing and shows FSDP's own cost) and reports tokens/s and peak memory (torch.cuda.max_memory_allocated) of
ours with and without it.

With --profile PATH, a last short run of ours (3 steps after 2 of warm-up) is recorded by torch.profiler: PATH gets
its operators by self time on the device (CUDA, else CPU), the 25 costliest first: where the step time that is not
matrix work goes (the gap to 100% MFU).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ptft.finetune import IGNORE_INDEX, build_trainer, collate, flops_per_token, peak_flops  # noqa: E402

# allenai/OLMo-1B-hf's config.json (no network on the GPU machines, so it is written here).
OLMO_1B = {
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "intermediate_size": 8192,
    "vocab_size": 50304,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    "clip_qkv": None,
    "pad_token_id": 1,
    "eos_token_id": 50279,
    "tie_word_embeddings": True,  # 1.18B parameters, as OLMo-1B-hf (OLMo-1B-0724-hf unties them)
}
# The embedded study's model (params.yaml models.tiny-olmo), for CPU.
TINY = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 384,
    "vocab_size": 1024,
    "max_position_embeddings": 512,
    "pad_token_id": 1,
    "eos_token_id": 2,
}
# Example lengths in tokens (prompt, completion): XSum articles are long, their one-sentence summaries short.
LENGTHS = {"cuda": ((400, 600), (20, 30)), "cpu": ((150, 350), (10, 20))}
RECIPE = {"epochs": 1, "lr": 2e-6, "batch_size": 8, "warmup_ratio": 0.03, "weight_decay": 0.0, "seed": 42}


def build_model(device: str):
    from transformers import AutoModelForCausalLM, OlmoConfig

    config = OlmoConfig(**(OLMO_1B if device == "cuda" else TINY))
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)


def synthetic_examples(n: int, device: str, vocab: int, eos: int, seed: int = 0) -> list[dict]:
    """Random-token prompt/completion pairs with labels on the completion and EOS only."""
    rnd = random.Random(seed)
    (p_lo, p_hi), (c_lo, c_hi) = LENGTHS[device]
    examples = []
    for _ in range(n):
        prompt = [rnd.randrange(3, vocab) for _ in range(rnd.randint(p_lo, p_hi))]
        completion = [rnd.randrange(3, vocab) for _ in range(rnd.randint(c_lo, c_hi))] + [eos]
        examples.append({"input_ids": prompt + completion, "labels": [IGNORE_INDEX] * len(prompt) + completion})
    return examples


class StepClock:
    """Wall time at the end of every optimizer step, and the real tokens of every collated micro-batch."""

    def __init__(self, collator):
        self.collator, self.micro_tokens, self.step_ends = collator, [], []

    def __call__(self, batch):
        out = self.collator(batch)
        mask = out.get("attention_mask")
        self.micro_tokens.append(int(mask.sum()) if mask is not None else out["input_ids"].numel())
        return out

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class OnStepEnd(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()  # the step's kernels have run, not just been queued
                clock.step_ends.append(time.perf_counter())

        return OnStepEnd()

    def tokens_per_s(self, warmup: int, accum: int) -> float:
        # micro-batches are collated in the order steps consume them (a prefetched extra one at the end is unused)
        steps = len(self.step_ends)
        tokens = sum(self.micro_tokens[warmup * accum : steps * accum])
        return tokens / (self.step_ends[-1] - self.step_ends[warmup - 1])


def run_ours(
    model, examples, micro_batch_size: int, steps: int, warmup: int, workdir: Path, sharding: str = "none"
) -> dict:
    settings = {**RECIPE, "micro_batch_size": micro_batch_size, "packing": True, "bf16": "auto", "save_steps": None}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = build_trainer(
        model, examples, settings, ft_set="bench", state_dir=workdir / f"ours-{sharding}",
        log_file=workdir / f"ours-{sharding}.jsonl", pad_token_id=model.config.pad_token_id,
        max_steps=warmup + steps, sharding=sharding,
    )  # fmt: skip
    clock = StepClock(trainer.data_collator)
    trainer.data_collator = clock
    trainer.add_callback(clock.callback())
    trainer.train()
    peak = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None
    return {"tokens_per_s": clock.tokens_per_s(warmup, trainer.plan["gradient_accumulation"]), "peak_memory_gb": peak}


def profile_ours(model, examples, micro_batch_size: int, workdir: Path, path: Path) -> dict:
    """5 optimizer steps of ours, the last 3 recorded by torch.profiler (schedule: 2 warm-up steps not recorded, so
    allocator growth and first-call costs stay out): the operator table, sorted by self time on the device that ran
    (CUDA, else CPU), written to path. Returns {"profiled_steps": 3, "table": str(path)}."""
    from torch.profiler import ProfilerActivity, profile, schedule
    from transformers import TrainerCallback

    settings = {**RECIPE, "micro_batch_size": micro_batch_size, "packing": True, "bf16": "auto", "save_steps": None}
    trainer = build_trainer(
        model, examples, settings, ft_set="bench", state_dir=workdir / "profile", log_file=workdir / "profile.jsonl",
        pad_token_id=model.config.pad_token_id, max_steps=5,
    )  # fmt: skip
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"

    def write_table(prof) -> None:  # the recorded cycle's events, before the profiler clears them
        path.write_text(prof.key_averages().table(sort_by=key, row_limit=25))

    with profile(activities=activities, schedule=schedule(wait=0, warmup=2, active=3), on_trace_ready=write_table) as prof:

        class Step(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                prof.step()

        trainer.add_callback(Step())
        trainer.train()
    if not path.is_file():
        raise RuntimeError(f"torch.profiler recorded no complete cycle of 3 steps; {path} not written")
    return {"profiled_steps": 3, "table": str(path)}


def one_process_group() -> None:
    """The environment of a one-process launch, so accelerate sets up the process group FSDP needs."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}.items():  # fmt: skip
        os.environ.setdefault(key, value)


def run_authors(model, examples, steps: int, warmup: int, workdir: Path) -> dict:
    """HF Trainer as the paper configured it: per-device batch 1, gradient accumulation 8, linear schedule."""
    from transformers import Trainer, TrainingArguments

    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(workdir / "authors"),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=8,
        max_steps=warmup + steps,
        learning_rate=RECIPE["lr"],
        weight_decay=0.0,
        lr_scheduler_type="linear",
        warmup_steps=1,
        bf16=cuda,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        use_cpu=not cuda,
        seed=RECIPE["seed"],
        disable_tqdm=True,
    )
    clock = StepClock(lambda batch: collate(batch, model.config.pad_token_id))
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=clock, callbacks=[clock.callback()])
    trainer.train()
    return {"tokens_per_s": clock.tokens_per_s(warmup, 8)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="a few CPU steps: the CI smoke test")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps per engine")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    parser.add_argument("--micro-batch", type=int, default=8, help="our examples per packed row (divides 8)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--sharding", choices=["none", "fsdp"], default="none",
                        help="fsdp: also run ours under FSDP (one process) and compare tokens/s and peak memory")  # fmt: skip
    parser.add_argument("--profile", type=Path, default=None,
                        help="also profile 3 steps of ours with torch.profiler; the operator table goes to this file")  # fmt: skip
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU visible to torch")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the Trainer picks the GPU whenever it sees one
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (3 if args.quick else 20 if args.device == "cuda" else 10)
    warmup = 1 if args.quick else args.warmup

    model = build_model(args.device)
    n = 8 * (warmup + steps) + 8  # every step draws fresh examples
    examples = synthetic_examples(n, args.device, model.config.vocab_size, model.config.eos_token_id)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    flops = flops_per_token(model, "full")
    peak = peak_flops()
    with tempfile.TemporaryDirectory(prefix="ptft-bench-") as tmp:
        authors = run_authors(model, examples, steps, warmup, Path(tmp))
        model.load_state_dict(initial)  # the same starting weights for both
        gc.collect()  # the baseline's optimizer state must not share the GPU with ours
        if args.device == "cuda":
            torch.cuda.empty_cache()
        ours = run_ours(model, examples, args.micro_batch, steps, warmup, Path(tmp))
        profiled = None
        if args.profile:  # before FSDP, which wraps the model it trains
            model.load_state_dict(initial)
            profiled = profile_ours(model, examples, args.micro_batch, Path(tmp), args.profile)
        fsdp = None
        if args.sharding == "fsdp":  # last: FSDP wraps the model it trains
            model.load_state_dict(initial)
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
            one_process_group()
            fsdp = run_ours(model, examples, args.micro_batch, steps, warmup, Path(tmp), sharding="fsdp")
    report = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "model": "OLMo-1B shape" if args.device == "cuda" else "embedded tiny OLMo",
        "parameters": sum(p.numel() for p in model.parameters()),
        "timed_steps": steps,
        "examples_per_step": 8,
        "mean_tokens_per_example": sum(len(e["input_ids"]) for e in examples) / len(examples),
        "ours_tokens_per_s": round(ours["tokens_per_s"], 1),
        "authors_tokens_per_s": round(authors["tokens_per_s"], 1),
        "ratio": round(ours["tokens_per_s"] / authors["tokens_per_s"], 2),
        "ours_mfu": round(flops * ours["tokens_per_s"] / peak, 4) if peak else None,
        "authors_mfu": round(flops * authors["tokens_per_s"] / peak, 4) if peak else None,
        "ours_peak_memory_gb": round(ours["peak_memory_gb"], 2) if ours["peak_memory_gb"] else None,
    }
    if profiled:
        report["profile"] = profiled
    if fsdp:
        report.update(
            fsdp_tokens_per_s=round(fsdp["tokens_per_s"], 1),
            fsdp_peak_memory_gb=round(fsdp["peak_memory_gb"], 2) if fsdp["peak_memory_gb"] else None,
            fsdp_ratio=round(fsdp["tokens_per_s"] / ours["tokens_per_s"], 2),
        )
    print(f"{'engine':<10} {'tokens/s':>12} {'MFU':>8}")
    for name in ("ours", "authors"):
        mfu = report[f"{name}_mfu"]
        print(f"{name:<10} {report[f'{name}_tokens_per_s']:>12,.0f} {f'{mfu:.1%}' if mfu is not None else 'n/a':>8}")
    print(f"ratio: {report['ratio']}x (ours / authors)")
    if fsdp:
        print(f"fsdp: {report['fsdp_tokens_per_s']:,.0f} tokens/s, {report['fsdp_ratio']}x ours without; peak memory "
              f"{report['fsdp_peak_memory_gb']} GB vs {report['ours_peak_memory_gb']} GB")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
