# Fine-tuning: every checkpoint x every training set, with that set's own settings.
# A shell rule running the package's CLI (ptft.finetune.main), so that a job with several processes
# (resources.finetune gpu x nodes, or processes_per_node) or finetune.sharding fsdp can start it under ptft.launch
# (torchrun; srun starts one per node); one GPU or CPU runs plain python, in both cases Snakemake's own interpreter
# (rules/common.smk puts it first on PATH). Multi-node jobs are one SLURM job: nodes and, per node, gpu.


rule finetune:
    input:
        checkpoint="checkpoints/{model}/{step}",
        train=get_ft_train,
    output:
        directory("models/{model}/{step}/{ft_set}"),
    log:
        "logs/finetune/{model}/{step}/{ft_set}.log",
    benchmark:
        "benchmarks/finetune/{model}/{step}/{ft_set}.tsv"
    # {ft_set} here is a run's label: the set's name, or name@lr<value>/@seed<n> for variants (rules/common.smk)
    wildcard_constraints:
        ft_set=alternatives(FT_LABELS),
    conda:
        "../envs/train.yaml"
    threads: get_threads("finetune")
    resources:
        **get_finetune_slurm_resources(),
        gpu=get_finetune_gpus(),
        cpus_per_gpu=get_resource("finetune", "cpus_per_gpu"),
        nodes=get_resource("finetune", "nodes"),
        mem_mb=get_resource("finetune", "mem_mb"),
        runtime=get_resource("finetune", "runtime"),
    # Science settings only: a change in params reruns the job (the profiles' rerun-triggers).
    params:
        task=get_ft_task,
        family=get_ft_family,
        settings=get_finetune_settings_json,
    shell:
        "$PTFT_FINETUNE_COMMAND --checkpoint {input.checkpoint:q} "
        "--train {input.train:q} --task {params.task:q} --ft-set {wildcards.ft_set:q} "
        '--settings {params.settings:q} --scheduling "$PTFT_SCHEDULING" --out {output:q} --threads {threads} '
        "> {log:q} 2>&1"
