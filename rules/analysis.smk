# Analysis: one tidy table of every result, key numbers, and the figures.


rule aggregate:
    input:
        evals=get_eval_results(),
        lr_choices=get_lr_choices(),
    output:
        table=report(
            "results/tables/results.csv",
            caption="../report/results.rst",
            category="0 Results table",
        ),
        summary="results/tables/summary.json",
    log:
        "logs/aggregate.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **get_aggregate_variants(),
        ft_sets=get_ft_set_tasks(),
        prompt_format=config["analysis"]["prompt_format"],
    script:
        "../scripts/aggregate.py"


rule plot_base_curves:
    input:
        table="results/tables/results.csv",
    output:
        png=report(
            "results/figures/base_curves.png",
            caption="../report/base_curves.rst",
            category="4 Base models across pre-training",
        ),
        svg="results/figures/base_curves.svg",
        provenance="results/figures/base_curves.png.provenance.json",
    log:
        "logs/plot_base_curves.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        prompt_format=config["analysis"]["prompt_format"],
    script:
        "../scripts/plot_base_curves.py"


rule plot_finetune_gain:
    input:
        table="results/tables/results.csv",
    output:
        png=report(
            "results/figures/finetune_gain.png",
            caption="../report/finetune_gain.rst",
            category="5 Gain from fine-tuning",
        ),
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
        prompt_format=config["analysis"]["prompt_format"],
    script:
        "../scripts/plot_finetune_gain.py"


rule findings_tables:
    input:
        table="results/tables/results.csv",
        evals=get_eval_results(),
        predictions=get_eval_predictions(),
    output:
        **{
            f"{name}_csv": report(
                f"results/tables/{name}.csv",
                caption=f"../report/table_{name}.rst",
                category=(
                    "0 A verdict per finding" if name == "verdicts" else "7 Tables"
                ),
            )
            for name in FINDINGS_TABLES
        },
        **{f"{name}_md": f"results/tables/{name}.md" for name in FINDINGS_TABLES},
        metrics="results/tables/findings.json",
        verdicts_metrics="results/tables/verdicts.json",
        provenance="results/tables/findings.json.provenance.json",
    log:
        "logs/findings_tables.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **get_aggregate_variants(),
        ft_sets=get_ft_set_tasks(),
        eval_sets=get_eval_set_tasks(),
        analysis=get_analysis_settings(),
    script:
        "../scripts/findings_tables.py"


rule finetune_curves_table:
    input:
        models=get_finetuned_models(),
    output:
        table="results/tables/finetune_curves.csv",
        provenance="results/tables/finetune_curves.csv.provenance.json",
    log:
        "logs/finetune_curves_table.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/finetune_curves_table.py"


rule plot_prompt_sensitivity:
    input:
        sensitivity="results/tables/prompt_sensitivity.csv",
    output:
        png=report(
            "results/figures/prompt_sensitivity.png",
            caption="../report/prompt_sensitivity.rst",
            category="1 Prompt sensitivity",
        ),
        svg="results/figures/prompt_sensitivity.svg",
        provenance="results/figures/prompt_sensitivity.png.provenance.json",
    log:
        "logs/plot_prompt_sensitivity.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_prompt_sensitivity.py"


rule plot_ratio_of_change:
    input:
        out_of_domain="results/tables/out_of_domain_ratio.csv",
        transfer="results/tables/task_transfer.csv",
    output:
        png=report(
            "results/figures/ratio_of_change.png",
            caption="../report/ratio_of_change.rst",
            category="2-3 Out-of-domain change and task transfer",
        ),
        svg="results/figures/ratio_of_change.svg",
        provenance="results/figures/ratio_of_change.png.provenance.json",
    log:
        "logs/plot_ratio_of_change.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_ratio_of_change.py"


rule plot_paper_comparison:
    input:
        unpack(get_paper_comparison_inputs),
    output:
        png=report(
            "results/figures/paper_comparison.png",
            caption="../report/paper_comparison.rst",
            category="0 A verdict per finding",
        ),
        svg="results/figures/paper_comparison.svg",
        provenance="results/figures/paper_comparison.png.provenance.json",
    log:
        "logs/plot_paper_comparison.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_paper_comparison.py"


rule plot_gain_by_group:
    input:
        gain="results/tables/gain_table.csv",
    output:
        png=report(
            "results/figures/gain_by_group.png",
            caption="../report/gain_by_group.rst",
            category="5 Gain from fine-tuning",
        ),
        svg="results/figures/gain_by_group.svg",
        provenance="results/figures/gain_by_group.png.provenance.json",
    log:
        "logs/plot_gain_by_group.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_gain_by_group.py"


rule plot_base_curves_by_group:
    input:
        table="results/tables/results.csv",
        groups="results/tables/learned_in_pretraining.csv",
    output:
        png=report(
            "results/figures/base_curves_by_group.png",
            caption="../report/base_curves_by_group.rst",
            category="4 Base models across pre-training",
        ),
        svg="results/figures/base_curves_by_group.svg",
        provenance="results/figures/base_curves_by_group.png.provenance.json",
    log:
        "logs/plot_base_curves_by_group.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        analysis=get_analysis_settings(),
    script:
        "../scripts/plot_base_curves_by_group.py"


rule plot_finetune_curves:
    input:
        curves="results/tables/finetune_curves.csv",
    output:
        png=report(
            "results/figures/finetune_curves.png",
            caption="../report/finetune_curves.rst",
            category="6 Fine-tuning curves",
        ),
        svg="results/figures/finetune_curves.svg",
        provenance="results/figures/finetune_curves.png.provenance.json",
    log:
        "logs/plot_finetune_curves.log",
    conda:
        "../envs/plot.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_finetune_curves.py"
