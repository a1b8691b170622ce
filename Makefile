# deployer: `make demo` and `make test` do everything on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MODEL  ?= examples/shapes/shapes.toml
OUT    ?= dist
DEPLOYER := $(PY) -m deployer.cli

JS_DIR := deployer/runtimes/js

# Every profile in targets/ is a make target of its own: adding a board is adding a file there.
TARGETS := $(basename $(notdir $(wildcard targets/*.toml)))
DEMO_TARGETS := web android embedded ios mcu

.PHONY: setup demo test $(TARGETS) all keras bench bench-build example-model chromium clean

setup: $(STAMP)

# The stamp makes setup idempotent: it reinstalls only when the pins or the package change.
$(STAMP): pyproject.toml constraints.txt $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (the toolchain is pinned for Python 3.11)"; exit 2; }
	@command -v npm >/dev/null || { echo "need Node.js 20 and npm for the web runtimes"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,test]'
	# tensorflowjs 4.22's declared dependencies cannot be installed together (docs/ARCHITECTURE.md);
	# tflite-micro's (flatbuffers, numpy, pyyaml) are installed already and must not be upgraded.
	$(PY) -m pip install --quiet --no-deps -c constraints.txt tensorflowjs jax jaxlib tflite-micro
	cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	command -v chromium >/dev/null || $(MAKE) chromium
	touch $(STAMP)

# The browser runs use Debian's chromium (playwright's own browser download does not work offline).
chromium:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else echo "install Debian's chromium package: sudo apt-get install chromium"; exit 2; fi

demo: setup
	$(DEPLOYER) build $(MODEL) $(addprefix --target ,$(DEMO_TARGETS)) --out $(OUT)

test: setup
	$(PY) -m pytest -q

$(TARGETS): setup
	$(DEPLOYER) build $(MODEL) --target $@ --out $(OUT)

all: setup
	$(DEPLOYER) build $(MODEL) $(addprefix --target ,$(TARGETS)) --out $(OUT)

# The Keras twin of the example, through the TensorFlow frontend, for every target.
keras: setup
	$(DEPLOYER) build examples/shapes/shapes_keras.toml $(addprefix --target ,$(DEMO_TARGETS)) --out $(OUT)

# Latency and size of every artifact of MODEL, with ratios to fp32 (builds first when needed).
bench: setup
	$(DEPLOYER) bench $(MODEL) --out $(OUT)

# The build's own speed: MODEL built cold and warm in one run, wall time per stage, warm/cold ratio.
bench-build: setup
	$(PY) -m deployer.benchbuild $(MODEL) --out $(OUT)/bench-build --json $(OUT)/bench-build.json

# Retrain the example detector (CPU, seeded, about 10 minutes on 2 cores).
example-model: setup
	$(PY) -m examples.shapes.train --out examples/shapes/shapes.pt
	$(PY) -m examples.shapes.train_keras --out examples/shapes/shapes_keras.keras

clean:
	rm -rf $(OUT) .pytest_cache
