# Data: the generated pre-training corpus and every task data set (train/test splits and a card).
# A data set is generated here (ptft.data), with source: hub downloaded from the Hugging Face hub (ptft.hubdata; a
# hub job needs the network unless the hub cache already holds its files), or with source: local read from the
# project's own files (ptft.localdata).


rule prepare_corpus:
    output:
        corpus="data/corpus/train.jsonl",
        card="data/corpus/card.json",
    log:
        "logs/prepare_corpus.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        world=canonical(config["data"]["world"]),
        corpus=canonical(config["data"]["corpus"]),
        seed=config["data"]["seed"],
    script:
        "../scripts/prepare_corpus.py"


rule prepare_dataset:
    input:
        files=get_local_files,
    output:
        train="data/{dataset}/train.jsonl",
        test="data/{dataset}/test.jsonl",
        card="data/{dataset}/card.json",
    log:
        "logs/prepare_dataset/{dataset}.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=get_dataset_spec,
        family=get_dataset_family,
        world=canonical(config["data"]["world"]),
        seed=config["data"]["seed"],
    script:
        "../scripts/prepare_dataset.py"
