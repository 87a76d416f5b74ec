# Two commands: `make demo` runs the whole course workflow, `make test` runs the test suite.
# Every default lives in fedmnist/defaults.py; a variable given here (make demo CLIENTS=3) only overrides it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
CLIENTS ?=
SEED ?=
EPOCHS ?=
BATCH_SIZE ?=
MU ?=
ROUNDS ?=
STRATEGY ?=
OUT ?=
PYTEST_ARGS ?=
FLOWER_TIMEOUT ?=
SCENARIOS := $(basename $(notdir $(wildcard experiments/scenarios/*.toml)))

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED = 1

.PHONY: venv flower demo bench robustness scenarios seeds results flower-simulation flower-deployment flower-compare test test-fast clean

# The pinned requirements, then this project in editable mode (no PYTHONPATH anywhere).
$(VENV)/.installed: requirements.txt pyproject.toml
	@echo "==> Creating $(VENV): requirements.txt, then the project itself (pip install -e .)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e .
	@touch $@

venv: $(VENV)/.installed

# Flower is optional: only the Flower App, its tests and the comparison need it.
$(VENV)/.flower-installed: $(VENV)/.installed requirements-flower.txt
	@echo "==> Installing requirements-flower.txt (Flower with its simulation engine)"
	$(PIP) -r requirements-flower.txt
	@touch $@

flower: $(VENV)/.flower-installed

demo: venv
	$(PY) demo.py $(if $(CLIENTS),--clients $(CLIENTS)) $(if $(SEED),--seed $(SEED)) $(if $(OUT),--out $(OUT)) \
	  $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) $(if $(MU),--mu $(MU))

bench: venv
	@echo "==> benchmarks: training throughput, aggregation at K = 10, 100, 1000, end-to-end stages -> results/benchmarks.json"
	$(PY) -m benchmarks.training
	$(PY) -m benchmarks.aggregation
	$(PY) -m benchmarks.end_to_end

robustness: venv
	@echo "==> every strategy against every attack, M = 1, 2 -> results/robustez.json"
	@test -f data/manifest.json || $(PY) split_data.py
	$(PY) experiments/robustness.py

scenarios: venv
	@echo "==> the scenarios of experiments/scenarios/ ($(SCENARIOS)) -> results/simulacion/"
	for s in $(SCENARIOS); do $(PY) experiments/simulation.py --scenario $$s --force || exit 1; done

seeds: venv
	@echo "==> one-shot comparison and robustness over the study's seeds -> results/semillas.json"
	$(PY) experiments/seeds.py

# Everything the essay reports, then its tables (and the README's) re-rendered from results/.
results: seeds scenarios
	$(PY) experiments/tables.py --write ensayo_aprendizaje_federado.md README.md

FLOWER_OPTIONS = $(if $(CLIENTS),--clients $(CLIENTS)) $(if $(ROUNDS),--rounds $(ROUNDS)) \
	$(if $(STRATEGY),--strategy $(STRATEGY)) $(if $(SEED),--seed $(SEED)) $(if $(FLOWER_TIMEOUT),--timeout $(FLOWER_TIMEOUT))

flower-simulation: flower
	$(PY) experiments/flower_local.py simulation $(FLOWER_OPTIONS)

flower-deployment: flower
	$(PY) experiments/flower_local.py deployment $(FLOWER_OPTIONS)

flower-compare: flower
	@echo "==> the same IID federation, FedAvg: own simulation, Flower simulation, Flower deployment"
	$(PY) -m benchmarks.flower_comparison $(if $(CLIENTS),--clients $(CLIENTS)) $(if $(SEED),--seed $(SEED))

# The suite includes the Flower tests, so it installs Flower too.
test: venv flower
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf outputs data/cliente_*.npz data/test.npz data/pesos_iniciales.npz data/manifest.json data/particion.png
