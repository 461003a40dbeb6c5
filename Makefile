# The two commands of the README: `make demo` and `make test`. Both set up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := ocr,ray,train,remote,qa,report,dev

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned: anything that pulls an unpinned torch would fetch a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python examples/make_samples.py samples
	$(BIN)/sagecorpus run examples/demo.yaml --out demo-out
	$(BIN)/sagecorpus verify demo-out/manifest.json

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf demo-out samples
