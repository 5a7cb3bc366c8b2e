# Analysis: one tidy table of every result, key numbers, and the figures.


rule aggregate:
    input:
        get_eval_results(),
    output:
        table="results/tables/results.csv",
        summary="results/tables/summary.json",
    log:
        "logs/aggregate.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        ft_sets=get_ft_set_tasks(),
    script:
        "../scripts/aggregate.py"


rule plot_base_curves:
    input:
        table="results/tables/results.csv",
    output:
        png="results/figures/base_curves.png",
        svg="results/figures/base_curves.svg",
        provenance="results/figures/base_curves.png.provenance.json",
    log:
        "logs/plot_base_curves.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_base_curves.py"


rule plot_finetune_gain:
    input:
        table="results/tables/results.csv",
    output:
        png="results/figures/finetune_gain.png",
        svg="results/figures/finetune_gain.svg",
        provenance="results/figures/finetune_gain.png.provenance.json",
    log:
        "logs/plot_finetune_gain.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        ft_sets=get_ft_set_tasks(),
    script:
        "../scripts/plot_finetune_gain.py"
