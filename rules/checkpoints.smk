# Checkpoints: the tokenizer and every configured pre-training step of an embedded model (each step continues from
# the previous configured step, so adding a later step trains only the increment), and the checkpoints of hub and
# local models, materialized from a pinned hub commit or a local folder. Model-name constraints keep the two apart.


rule train_tokenizer:
    input:
        corpus="data/corpus/train.jsonl",
    output:
        directory("checkpoints/{model}/tokenizer"),
    log:
        "logs/train_tokenizer/{model}.log",
    wildcard_constraints:
        model=alternatives(EMBEDDED_MODELS),
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tokenizer=lambda wildcards: canonical(get_model_config(wildcards)["tokenizer"]),
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
    wildcard_constraints:
        model=alternatives(EMBEDDED_MODELS),
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


# Planning needs no network: the job resolves its revision (or reads the pin from the revisions lock), downloads the
# pinned commit's safetensors and configs, and writes checkpoints/{model}/{step} atomically with provenance.
rule materialize:
    output:
        directory("checkpoints/{model}/{step}"),
    log:
        "logs/materialize/{model}/{step}.log",
    benchmark:
        "benchmarks/materialize/{model}/{step}.tsv"
    wildcard_constraints:
        model=alternatives(MATERIALIZED_MODELS),
    conda:
        "../envs/train.yaml"
    resources:
        gpu=get_resource("materialize", "gpu"),
        cpus_per_gpu=get_resource("materialize", "cpus_per_gpu"),
        mem_mb=get_resource("materialize", "mem_mb"),
        runtime=get_resource("materialize", "runtime"),
    params:
        model_config=get_pretrain_config,
        revisions_lock=str(REVISIONS_LOCK),
    script:
        "../scripts/materialize.py"
