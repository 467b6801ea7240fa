# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Offline by default: an accidental model-hub call fails at once instead of hanging.
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MINICLIP_SMOKE=1 MPLBACKEND=Agg

.PHONY: demo test runs claims lab bench student wheel clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamp files re-run pip when the dependency files change.
$(VENV)/.installed: $(BIN)/python pyproject.toml requirements.txt
	$(BIN)/pip install -q -r requirements.txt -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -r requirements.txt -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/miniclip demo --out runs/demo --overwrite

# The notebooks run twice: at the smoke lesson (the shapes world), then at the rehearsal: the GPU lesson's cells
# (COCO, CIFAR-10, OpenAI's CLIP) at smoke sizes on local stand-ins, built once into runs/rehearsal/standins.
test: $(VENV)/.installed-dev
	$(TEST_ENV) $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env -q
	$(TEST_ENV) MINICLIP_LESSON=rehearsal $(BIN)/python -m pytest notebooks --nbval-lax --nbval-current-env -q \
		--nbval-sanitize-with notebooks/rehearsal_nbval.cfg

# Before class: every run the laptop lesson trains (the main run, the probe models, the experiments), trained once into
# runs/laptop (or $MINICLIP_RUNS/laptop) by executing the notebooks in order; in class each notebook then loads its runs
# instead of training them. A claim of the prose that fails on this machine is listed at the end, not fatal.
RUNS_CLAIMS := $(CURDIR)/runs/executed/claims.jsonl
runs: $(VENV)/.installed-dev
	mkdir -p runs/executed && rm -f $(RUNS_CLAIMS)
	runs=$$(realpath -m "$${MINICLIP_RUNS:-$(CURDIR)/runs}"); \
	for nb in notebooks/[0-9]*.ipynb; do \
		HF_HUB_OFFLINE=1 MPLBACKEND=Agg MINICLIP_LESSON=laptop MINICLIP_RUNS=$$runs MINICLIP_CLAIMS_LOG=$(RUNS_CLAIMS) \
		MINICLIP_NOTEBOOK=$$(basename $$nb) $(BIN)/jupyter nbconvert --to notebook --execute \
		--ExecutePreprocessor.timeout=-1 --output-dir runs/executed $$nb || exit 1; \
	done; \
	du -sh "$$runs/laptop" 2>/dev/null || echo "nothing was trained into $$runs/laptop"
	-$(BIN)/python -m miniclip.course.claims summary $(RUNS_CLAIMS)

# Every notebook at the laptop lesson, each claim of its prose checked against its own numbers (miniclip.course.claims);
# ends with "N claims checked, M failed". Run it after changing a lesson or the shapes world (tens of minutes).
CLAIMS_LOG := $(CURDIR)/runs/claims/claims.jsonl
claims: $(VENV)/.installed-dev
	rm -rf runs/claims && mkdir -p runs/claims
	for nb in notebooks/[0-9]*.ipynb; do \
		HF_HUB_OFFLINE=1 MPLBACKEND=Agg MINICLIP_LESSON=laptop MINICLIP_CLAIMS_LOG=$(CLAIMS_LOG) \
		MINICLIP_NOTEBOOK=$$(basename $$nb) $(BIN)/jupyter nbconvert --to notebook --execute \
		--ExecutePreprocessor.timeout=-1 --output-dir runs/claims $$nb || exit 1; \
	done
	$(BIN)/python -m miniclip.course.claims summary $(CLAIMS_LOG)

lab: $(VENV)/.installed-dev
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

bench: $(VENV)/.installed-dev
	$(BIN)/pip install -q -r requirements.txt -e '.[dev,bench]'
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/data.py
	$(BIN)/python bench/shapes_time_to_accuracy.py
	$(BIN)/python bench/memory.py

# student/ is committed (what students open): run this after every change to notebooks/ and commit the result.
student: $(VENV)/.installed-dev
	$(BIN)/python -m miniclip.course.student build notebooks --out student

# A wheel of miniclip in dist/, for a Colab that cannot reach the repository: upload it next to a notebook and the
# notebook's setup cell installs it (with the dependencies Colab lacks).
wheel: $(BIN)/python
	$(BIN)/pip wheel --no-deps -w dist .

clean:
	rm -rf runs .pytest_cache
