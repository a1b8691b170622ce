# deployer: `make demo` and `make test` do everything on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MODEL  ?= examples/shapes/shapes.toml
OUT    ?= dist
DEPLOYER := $(PY) -m deployer.cli

.PHONY: setup demo test web android embedded all bench example-model clean

setup: $(STAMP)

# The stamp makes setup idempotent: it reinstalls only when the pins or the package change.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (the toolchain is pinned for Python 3.11)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

demo: setup
	$(DEPLOYER) build $(MODEL) --target web --target android --target embedded --out $(OUT)

test: setup
	$(PY) -m pytest -q

web: setup
	$(DEPLOYER) build $(MODEL) --target web --out $(OUT)

android: setup
	$(DEPLOYER) build $(MODEL) --target android --out $(OUT)

embedded: setup
	$(DEPLOYER) build $(MODEL) --target embedded --out $(OUT)

all: setup
	$(DEPLOYER) build $(MODEL) --target web --target android --target embedded --out $(OUT)

# Latency and size of every artifact of MODEL, with ratios to fp32 (builds first when needed).
bench: setup
	$(DEPLOYER) bench $(MODEL) --out $(OUT)

# Retrain the example detector (CPU, seeded, about 10 minutes on 2 cores).
example-model: setup
	$(PY) -m examples.shapes.train --out examples/shapes/shapes.pt
	$(PY) -m examples.shapes.train_keras --out examples/shapes/shapes_keras.keras

clean:
	rm -rf $(OUT) .pytest_cache
