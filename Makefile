# Targets for the QStash / soketi verified Lambda handler. `make` alone lists them.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help zip test bench clean

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-z]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

zip: ## Build lambda.zip (lambda_function.py only; same sources, same sha256)
	@$(PYTHON) tools/build_zip.py lambda.zip lambda_function.py

$(VENV)/.installed: requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	@touch $@

test: $(VENV)/.installed ## Install the pinned test packages into .venv and run every test
	$(VPY) -m pytest tests $(PYTEST_ARGS)

bench: $(VENV)/.installed zip ## Measure verify speed, import cost and zip size against targets
	$(VPY) tools/bench.py

clean: ## Remove lambda.zip, .venv and caches
	rm -rf lambda.zip $(VENV) .pytest_cache tests/__pycache__ tools/__pycache__ __pycache__
