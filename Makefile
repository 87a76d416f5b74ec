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

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED = 1

.PHONY: venv demo robustness test test-fast clean

$(VENV)/.installed: requirements.txt
	@echo "==> Creating $(VENV) and installing requirements.txt"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

venv: $(VENV)/.installed

demo: venv
	@start=$$(date +%s); \
	echo "==> [1/3] split_data.py: MNIST for $(CLIENTS) clients (seed $(SEED))"; \
	$(PY) split_data.py --clients $(CLIENTS) --seed $(SEED) || exit 1; \
	mkdir -p $(OUT); \
	for c in $$(seq 1 $(CLIENTS)); do \
	  echo "==> [2/3] local_training.ipynb for CLIENT_ID $$c of $(CLIENTS) -> $(OUT)/local_training_cliente_$$c.ipynb"; \
	  t=$$(date +%s); \
	  $(PY) -m papermill local_training.ipynb $(OUT)/local_training_cliente_$$c.ipynb \
	    -p CLIENT_ID $$c -p SEED $(SEED) -p DATA_DIR data -p OUT_DIR $(OUT) \
	    $(if $(EPOCHS),-p EPOCHS $(EPOCHS)) $(if $(BATCH_SIZE),-p BATCH_SIZE $(BATCH_SIZE)) $(if $(MU),-p MU $(MU)) \
	    --log-level WARNING || exit 1; \
	  echo "    client $$c done in $$(( $$(date +%s) - t )) s"; \
	done; \
	echo "==> [3/3] global_aggregation.py"; \
	$(PY) global_aggregation.py --weights-dir $(OUT) --data data --out $(OUT) || exit 1; \
	mkdir -p results && cp $(OUT)/comparacion_metodos.png $(OUT)/resultados.json results/; \
	echo "==> make demo finished in $$(( $$(date +%s) - start )) s (figure and table copied to results/)"

robustness: venv
	@echo "==> robustness_study.py: every rule against every attack, M = 0, 1, 2 of $(CLIENTS) clients"
	@test -f data/manifest.json || $(PY) split_data.py --clients $(CLIENTS) --seed $(SEED)
	$(PY) robustness_study.py --data data --out results

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(OUT) data/cliente_*.npz data/test.npz data/pesos_iniciales.npz data/manifest.json
