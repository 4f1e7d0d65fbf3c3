# Targets for the QStash / soketi verified Lambda handler. `make` alone lists them.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python

PORT   ?= 3000
# Read by the tools from the environment, so quotes in BODY survive: make send BODY='{"a":1}'
export PORT URL SIGN_URL BODY EVENT

.DEFAULT_GOAL := help
.PHONY: help zip test bench stress clean distclean serve invoke send create deploy template

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-z]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

zip: ## Build lambda.zip: your lambda_function.py and modules, the receiver (same sources, same sha256)
	@$(PYTHON) tools/build_zip.py lambda.zip

$(VENV)/.installed: requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	@touch $@

# PYTEST_ARGS replaces the default `tests`: make test PYTEST_ARGS='tests/test_local.py -k reload'
test: $(VENV)/.installed ## Install the pinned test packages into .venv and run every test
	$(VPY) -m pytest $(or $(PYTEST_ARGS),tests)

# BENCH_STRICT=1 makes a missed target fail the run; `.venv/bin/python tools/bench.py --list`
# names the sections, which can be run alone (no page is written then).
bench: $(VENV)/.installed zip ## Every figure vs its target, written to docs/performance.md
	$(VPY) tools/bench.py

stress: $(VENV)/.installed ## Attack suite at full size: 100k+ forgeries, differential, fuzzing
	@$(VPY) -m pip install --quiet --disable-pip-version-check atheris==3.0.0 \
		|| echo "atheris did not install here: the fuzzer will not run"
	$(VPY) tools/stress/stress.py

serve: ## Local Function URL on 127.0.0.1:PORT (default 3000), running the handler as AWS does
	@$(PYTHON) tools/serve.py

invoke: ## Run the handler on an event file: make invoke EVENT=events/function-url.json
	@$(PYTHON) tools/invoke.py "$(EVENT)"

send: ## Sign BODY as QStash does and POST it: make send URL=https://... BODY='{}' [SIGN_URL=...]
	@$(PYTHON) tools/send.py

create: zip ## First deploy (needs the AWS CLI): make create FUNCTION=name ROLE=arn
	@$(PYTHON) tools/deploy.py create "$(FUNCTION)" "$(ROLE)"

deploy: zip ## Update the code (needs the AWS CLI), check CodeSha256: make deploy FUNCTION=name
	@$(PYTHON) tools/deploy.py update "$(FUNCTION)"

template: $(VENV)/.installed ## Check template.yaml offline (cfn-lint, sam validate --lint); print how to deploy it
	@$(VPY) tools/template.py

CACHES := lambda.zip .pytest_cache .hypothesis tests/__pycache__ tools/__pycache__ __pycache__ \
	signed_webhooks/__pycache__

clean: ## Remove lambda.zip, .venv and caches; keep build/ (the interpreters built from source)
	rm -rf $(CACHES) $(VENV)
	@echo "kept build/: CPython 3.9 and 3.13 built from source, Pyodide, the emulator, npm peers"
	@echo "(make distclean deletes them too)"

distclean: ## Remove everything make test made, build/ too (rebuilding: two CPython builds)
	rm -rf $(CACHES) $(VENV) build node_modules
	@echo "deleted the built interpreters and test peers in build/: the next make test downloads"
	@echo "them again and builds CPython 3.9 and 3.13 from source, about two minutes each on an"
	@echo "idle two-core machine (far longer on a busy one)"
