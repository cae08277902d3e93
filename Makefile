# Commands for a fresh machine: `make demo`, `make test` (everything: needs the data at
# $FACESUITE_DATA) and `make test-fast` (no data needed); each sets up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export FACESUITE_DATA ?= ../shared/data

.PHONY: setup demo test test-fast clean

setup: $(STAMP)

# The package's dependencies plus every extra, at the exact pins of requirements.txt. torch first,
# pinned: this exact release is on local disk here; anything else pulls GBs. facenet-pytorch (the
# MTCNN export's source weights, a test reference) and face_recognition (benchmark baseline) carry
# stale pins, so they go in with --no-deps after the rest.
$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -r requirements.txt -e '.[train,scale,dev]'
	$(PY) -m pip install -q --no-deps facenet-pytorch==2.6.0 face_recognition==1.3.0
	touch $(STAMP)

# Rebuild the ONNX networks shipped in src/facesuite/models from their sources, and SHA256SUMS.
.PHONY: models
models: setup
	$(PY) -m facesuite.train.export

demo: setup
	$(VENV)/bin/facesuite demo --data $(FACESUITE_DATA) --out demo-out

test: setup
	$(PY) -m pytest

# The fast tier: the sample photos in samples/ and images made in the tests, no data folder.
test-fast: setup
	$(PY) -m pytest -m "not data"

clean:
	rm -rf $(VENV) demo-out
