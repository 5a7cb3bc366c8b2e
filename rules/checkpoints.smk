# Checkpoints: the tokenizer and every configured pre-training step of an embedded model.
# Each step continues from the previous configured step, so adding a later step trains only the increment.


rule train_tokenizer:
    input:
        corpus="data/corpus/train.jsonl",
    output:
        directory("checkpoints/{model}/tokenizer"),
    log:
        "logs/train_tokenizer/{model}.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tokenizer=lambda wildcards: get_model_config(wildcards)["tokenizer"],
        seed=config["seed"],
    script:
        "../scripts/train_tokenizer.py"


rule pretrain:
    input:
        corpus="data/corpus/train.jsonl",
        tokenizer="checkpoints/{model}/tokenizer",
        previous=get_previous_checkpoint,
    output:
        directory("checkpoints/{model}/{step}"),
    log:
        "logs/pretrain/{model}/{step}.log",
    benchmark:
        "benchmarks/pretrain/{model}/{step}.tsv"
    conda:
        "../envs/train.yaml"
    threads: get_threads("pretrain")
    resources:
        gpu=get_resource("pretrain", "gpu"),
        cpus_per_gpu=get_resource("pretrain", "cpus_per_gpu"),
        mem_mb=get_resource("pretrain", "mem_mb"),
        runtime=get_resource("pretrain", "runtime"),
    params:
        model_config=get_pretrain_config,
    script:
        "../scripts/pretrain.py"
