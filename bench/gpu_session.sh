#!/usr/bin/env bash
# The GPU benchmarks of bench/README.md in one run, for a lent GPU machine with no network (the device tool): the
# packages ptft needs beyond that machine's image travel as wheels in .whl/ (see the device tool's README), installed
# into /tmp/site. Writes each benchmark's output to $OUT (or ./gpu-out). Each step has its own time limit, so one
# that hangs cannot eat the others' time.
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >"$OUT/pip.log" 2>&1 || { tail -20 "$OUT/pip.log"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=/tmp/hf XDG_CACHE_HOME=/tmp/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, lm_eval, datasets, peft, ptft.evaluate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'lm_eval', lm_eval.__version__, 'datasets', datasets.__version__, 'peft', peft.__version__)" 2>&1 | tail -3 | tee -a "$OUT/gpu.txt"
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; local rc=$?
  echo "== $name: rc $rc, $((SECONDS - t0)) s" | tee -a "$OUT/gpu.txt"
  grep -v "it/s\]\|it/s$\|s/it\]" "$OUT/$name.log" | tail -${TAIL:-40}
}
step eval_olmo1b_bf16 ${EVAL_LIMIT:-200} python3 bench/eval_throughput.py --shape olmo-1b --items ${ITEMS:-64} --batch-size 64
# Fixed shots (the paper config's fewshot_source train_fixed, the bench's default): prompt tokens computed with the
# shared prefix and without, and ours timed both ways; then the rates make estimate uses, at scale, generating to
# max_new_tokens (--no-stop: the random model never stops at a newline, so generated tokens/s is measured, not assumed)
step eval_olmo1b_shared ${SHARED_LIMIT:-240} python3 bench/eval_throughput.py --shape olmo-1b --items ${ITEMS:-64} --batch-size 64 --unshared
step eval_olmo1b_rates ${RATES_LIMIT:-240} python3 bench/eval_throughput.py --shape olmo-1b --items 512 --batch-size 64 --ours-only --no-stop --unshared
# generated tokens/s with evaluate.decode_cache static (transformers compiles the decoding step of a static cache on
# a GPU) against the dynamic cache of the step above, generating to max_new_tokens
step eval_olmo1b_static ${STATIC_LIMIT:-240} python3 bench/eval_throughput.py --shape olmo-1b --items 512 --batch-size 64 --ours-only --no-stop --decode-cache static
# fine-tuning MFU (ours and the authors' setting in one run), FSDP's own cost, and where ours' step time goes
step finetune_olmo1b ${FT_LIMIT:-200} python3 bench/finetune_throughput.py --device cuda --sharding fsdp --profile "$OUT/finetune_profile.txt"
step eval_olmo1b_fp32 ${EVAL32_LIMIT:-150} python3 bench/eval_throughput.py --shape olmo-1b --items 32 --batch-size 64 --dtype float32
# Two evaluation jobs at once, each holding a GPU slot (ptft.gpu_slots): on several GPUs they run on different ones;
# on one GPU the second waits for the first. Each job's log line "scoring ... on cuda:0 (CUDA_VISIBLE_DEVICES=k, ...)"
# and nvidia-smi's compute apps (pid, GPU UUID) show where each ran.
step two_eval_jobs ${TWO_LIMIT:-300} python3 bench/two_eval_jobs.py --items ${TWO_ITEMS:-32}
