# Learning-rate search (a training set whose lr is a list): carve a dev slice from its training split, score every
# run on it, choose the lr (ptft.variants). Seeds need no rule of their own: they are runs of the finetune rule.


rule lr_search_split:
    input:
        train="data/{searched_set}/train.jsonl",
    output:
        train="data/{searched_set}/lr_search/train.jsonl",
        dev="data/{searched_set}/lr_search/dev.jsonl",
    log:
        "logs/lr_search_split/{searched_set}.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        n_dev=config["finetune"]["lr_search"]["n_dev"],
        seed=config["finetune"]["lr_search"]["seed"],
    script:
        "../scripts/lr_search_split.py"


rule evaluate_dev:
    input:
        model="models/{model}/{step}/{ft_set}",
        lora_base=get_eval_lora_base,
        data=get_dev_data,
    output:
        results="results/lr_search/{model}/{step}/{ft_set}.json",
        predictions="results/lr_search/{model}/{step}/{ft_set}.predictions.jsonl",
    log:
        "logs/evaluate_dev/{model}/{step}/{ft_set}.log",
    benchmark:
        "benchmarks/evaluate_dev/{model}/{step}/{ft_set}.tsv"
    # {ft_set} here is a fine-tuning run's label, as in the finetune rule
    wildcard_constraints:
        ft_set=alternatives(FT_LABELS),
    conda:
        get_eval_env()
    threads: get_threads("evaluate")
    resources:
        gpu=get_resource("evaluate", "gpu"),
        cpus_per_gpu=get_resource("evaluate", "cpus_per_gpu"),
        mem_mb=get_resource("evaluate", "mem_mb"),
        runtime=get_resource("evaluate", "runtime"),
    params:
        eval_sets=get_dev_eval_set,
        settings=get_dev_evaluate_settings(),
        lora_eval=get_eval_lora_mode,
    script:
        "../scripts/evaluate.py"


rule select_lr:
    input:
        get_lr_search_runs,
    output:
        "results/lr_search/{model}/{searched_set}.json",
    log:
        "logs/select_lr/{model}/{searched_set}.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=get_lr_search_params,
        select=config["finetune"]["lr_search"]["select"],
    script:
        "../scripts/select_lr.py"
