# Targets for the QStash / soketi verified Lambda handler. `make` alone lists them.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python

PORT   ?= 3000
# Read by the tools from the environment, so quotes in BODY survive: make send BODY='{"a":1}'.
# ARCH: the function's machine, arm64 (the default) or x86_64, for make zip, create, deploy.
export PORT URL SIGN_URL BODY EVENT ARCH MODULES

.DEFAULT_GOAL := help
.PHONY: help zip test bench stress mutants clean distclean serve invoke send create deploy template

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-z]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

zip: ## Check and build lambda.zip: your code, the receiver, requirements.txt's wheels [ARCH=x86_64]
	@$(PYTHON) tools/build_zip.py lambda.zip

# What the installs, the tests and the benchmarks write stays inside the project, so that
# make distclean removes all of it: temporary files (TMPDIR: pytest's tmp_path, tempfile, and
# every program they start) in build/tmp; npm's and pip's downloads in build/cache, not in
# ~/.npm and ~/.cache/pip. tests/conftest.py sets the same for a pytest run started by hand.
BUILD_TMP := $(CURDIR)/build/tmp
CACHE     := $(CURDIR)/build/cache
$(VENV)/.installed test bench stress template: export TMPDIR := $(BUILD_TMP)
$(VENV)/.installed test bench stress template: export npm_config_cache := $(CACHE)/npm
$(VENV)/.installed test bench stress template: export PIP_CACHE_DIR := $(CACHE)/pip

$(BUILD_TMP):
	@mkdir -p $@

$(VENV)/.installed: requirements-test.txt | $(BUILD_TMP)
	@echo "installing the pinned test packages (requirements-test.txt) into $(VENV): once, about"
	@echo "600 MB, usually two to four minutes"
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	@touch $@

# PYTEST_ARGS replaces the default `tests`: make test PYTEST_ARGS='tests/test_local.py -k reload'
test: $(VENV)/.installed | $(BUILD_TMP) ## Install the pinned test packages into .venv and run every test
	$(VPY) -m pytest $(or $(PYTEST_ARGS),tests)

# BENCH_STRICT=1 makes a missed target fail the run; `.venv/bin/python tools/bench.py --list`
# names the sections, which can be run alone (no page is written then).
bench: $(VENV)/.installed zip | $(BUILD_TMP) ## Every figure vs its target, written to docs/performance.md
	$(VPY) tools/bench.py

stress: $(VENV)/.installed | $(BUILD_TMP) ## Attack suite at full size: 100k+ forgeries, differential, fuzzing
	@$(VPY) -m pip install --quiet --disable-pip-version-check atheris==3.0.0 \
		|| echo "atheris did not install here: the fuzzer will not run"
	$(VPY) tools/stress/stress.py

mutants: $(VENV)/.installed ## Mutation testing of the security-critical modules (long; MODULES=qstash,dedup)
	$(VPY) tools/mutants.py

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

# Needs only $(PYTHON) (3.10+): it installs the SAM CLI and cfn-lint into build/sam-venv, not .venv.
template: | $(BUILD_TMP) ## Check template.yaml offline (cfn-lint, sam validate --lint); print the sam deploy command
	@$(PYTHON) tools/template.py

CACHES := lambda.zip .pytest_cache .hypothesis tests/__pycache__ tools/__pycache__ __pycache__ \
	signed_webhooks/__pycache__ tools/stress/__pycache__ tests/probes/__pycache__
# What make clean keeps in build/, slow to make again: the interpreters built from source,
# Pyodide, the emulator and npm peers (peers), the SAM CLI (sam-venv), npm's and pip's
# downloads (cache). Everything else in build/ is temporary files, lint caches and outputs.
KEPT_IN_BUILD := build/peers build/sam-venv build/cache

clean: ## Remove lambda.zip, .venv, caches and temporary files; keep the interpreters built from source
	rm -rf $(CACHES) $(VENV) $(filter-out $(KEPT_IN_BUILD),$(wildcard build/*))
	@echo "kept build/peers (CPython 3.9 and 3.13 built from source, Pyodide, the emulator, npm"
	@echo "peers), build/sam-venv (the SAM CLI) and build/cache (npm's and pip's downloads):"
	@echo "make distclean deletes them too"

distclean: ## Remove everything make test made, build/ too (rebuilding: two CPython builds)
	rm -rf $(CACHES) $(VENV) build node_modules
	@echo "deleted build/: the interpreters built from source, the test peers, the SAM CLI and"
	@echo "the download caches. The next make test downloads them again and builds CPython 3.9"
	@echo "and 3.13 from source, about two minutes each on an idle two-core machine (far longer"
	@echo "on a busy one)"
