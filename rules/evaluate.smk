# Evaluation: every base checkpoint and fine-tuned model on every eval set x prompt format x shots.


rule evaluate:
    input:
        model=get_eval_model,
        lora_base=get_eval_lora_base,
        data=get_eval_data(),
    output:
        results="results/eval/{model}/{step}/{ft_set}.json",
        predictions="results/eval/{model}/{step}/{ft_set}.predictions.jsonl",
    log:
        "logs/evaluate/{model}/{step}/{ft_set}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{step}/{ft_set}.tsv"
    # {ft_set} here is "base" or a fine-tuning run's label (the finetune rule's {ft_set}: a set's name, or
    # name@lr<value>/@seed<n> for variants)
    wildcard_constraints:
        ft_set=alternatives(FT_LABELS + ["base"]),
    conda:
        get_eval_env()
    threads: get_threads("evaluate")
    resources:
        gpu=get_resource("evaluate", "gpu"),
        cpus_per_gpu=get_resource("evaluate", "cpus_per_gpu"),
        mem_mb=get_resource("evaluate", "mem_mb"),
        runtime=get_resource("evaluate", "runtime"),
    # Science settings only: threads and batch_size reach the script outside params (scripts/evaluate.py).
    params:
        eval_sets=get_eval_sets(),
        settings=get_evaluate_settings(),
        lora_eval=get_eval_lora_mode,
    script:
        "../scripts/evaluate.py"
