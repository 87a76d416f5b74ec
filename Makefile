# Two commands: `make demo` runs the whole course workflow, `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CLIENTS ?= 5
SEED ?= 42
# Local-training overrides for the notebook (empty: the notebook's own defaults).
EPOCHS ?=
BATCH_SIZE ?=
MU ?=
OUT ?= outputs
PYTEST_ARGS ?=
ROUNDS ?= 3
STRATEGY ?= fedavg
FLOWER_TIMEOUT ?= 1800

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED = 1

.PHONY: venv flower demo bench robustness scenarios seeds results flower-simulation flower-deployment flower-compare test test-fast clean

$(VENV)/.installed: requirements.txt
	@echo "==> Creating $(VENV) and installing requirements.txt"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

venv: $(VENV)/.installed

# Flower is optional: only the Flower App, its tests and the comparison need it.
$(VENV)/.flower-installed: $(VENV)/.installed requirements-flower.txt
	@echo "==> Installing requirements-flower.txt (Flower with its simulation engine)"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-flower.txt
	@touch $@

flower: $(VENV)/.flower-installed

demo: venv
	$(PY) demo.py --clients $(CLIENTS) --seed $(SEED) --out $(OUT) \
	  $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) $(if $(MU),--mu $(MU))

bench: venv
	@echo "==> benchmarks: training throughput, aggregation at K = 10, 100, 1000, end-to-end stages -> results/benchmarks.json"
	$(PY) -m benchmarks.training
	$(PY) -m benchmarks.aggregation
	$(PY) -m benchmarks.end_to_end

robustness: venv
	@echo "==> robustness_study.py: every rule against every attack, M = 0, 1, 2 of $(CLIENTS) clients"
	@test -f data/manifest.json || $(PY) split_data.py --clients $(CLIENTS) --seed $(SEED)
	$(PY) robustness_study.py --data data --out results

scenarios: venv
	@echo "==> federated_simulation.py: the named multi-round scenarios -> results/simulacion/"
	for s in curso-iid curso-dirichlet fedavg-iid fedavg-shards; do $(PY) federated_simulation.py --scenario $$s || exit 1; done

seeds: venv
	@echo "==> seed_study.py: one-shot comparison and robustness over seeds 42 43 44 -> results/semillas.json"
	$(PY) seed_study.py --seeds 42 43 44

# Everything the essay reports, then its tables (and the README's) re-rendered from results/.
results: seeds scenarios
	$(PY) results_tables.py --write ensayo_aprendizaje_federado.md README.md

flower-simulation: flower
	$(PY) flower_app/run_local.py simulation --clients $(CLIENTS) --rounds $(ROUNDS) --strategy $(STRATEGY) --seed $(SEED) --timeout $(FLOWER_TIMEOUT)

flower-deployment: flower
	$(PY) flower_app/run_local.py deployment --clients $(CLIENTS) --rounds $(ROUNDS) --strategy $(STRATEGY) --seed $(SEED) --timeout $(FLOWER_TIMEOUT)

flower-compare: flower
	@echo "==> the same 5-client IID federation, FedAvg: own simulation, Flower simulation, Flower deployment"
	$(PY) -m benchmarks.flower_comparison --clients $(CLIENTS) --rounds 5 --seed $(SEED)

# The suite includes the Flower tests, so it installs Flower too.
test: venv flower
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(OUT) data/cliente_*.npz data/test.npz data/pesos_iniciales.npz data/manifest.json
