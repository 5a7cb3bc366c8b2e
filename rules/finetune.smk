# Fine-tuning: every checkpoint x every training set, with that set's own settings.


rule finetune:
    input:
        checkpoint="checkpoints/{model}/{step}",
        train="data/{ft_set}/train.jsonl",
    output:
        directory("models/{model}/{step}/{ft_set}"),
    log:
        "logs/finetune/{model}/{step}/{ft_set}.log",
    benchmark:
        "benchmarks/finetune/{model}/{step}/{ft_set}.tsv"
    conda:
        "../envs/train.yaml"
    threads: get_threads("finetune")
    resources:
        gpu=get_resource("finetune", "gpu"),
        cpus_per_gpu=get_resource("finetune", "cpus_per_gpu"),
        mem_mb=get_resource("finetune", "mem_mb"),
        runtime=get_resource("finetune", "runtime"),
    params:
        task=get_ft_task,
        settings=get_finetune_settings,
    script:
        "../scripts/finetune.py"
