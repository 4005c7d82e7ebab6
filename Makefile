# The two commands of the README:
#   make run    set up, then run the conformance suite (against the local sandbox if no kubeconfig)
#   make test   set up, then lint, type-check and run every test (unit, then sandbox integration)
# `make run ARGS="--profile inference --kubeconfig ~/.kube/config"` passes options to `kaic run`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kaic-installed
ARGS   ?=
# Linters that are not Python packages are built with Go into the cache, keyed by version.
KAIC_CACHE_DIR     ?= $(HOME)/.cache/kaic
ACTIONLINT_VERSION := v1.7.12
ACTIONLINT         := $(KAIC_CACHE_DIR)/tools/actionlint-$(ACTIONLINT_VERSION)/actionlint
DEBIAN_PACKAGES    := nftables runc containernetworking-plugins busybox-static skopeo debootstrap buildah \
                      chromium

.PHONY: setup run test lint unit integration bench clean repeat-runs

$(STAMP): pyproject.toml
	@# Debian's packages, when root: nftables (kube-proxy's `nft`); runc, containernetworking-plugins,
	@# busybox-static and skopeo (the real nodes and their registry); debootstrap and buildah (the
	@# probe image); chromium (report.html is checked in it by a test)
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q $$missing >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1; } || \
	    echo "note: apt-get could not install:" $$missing; \
	  else \
	    echo "note: not installed (not root or no apt-get):" $$missing "- the sandbox leaves out" \
	      "what needs them (kube-proxy without nftables, real nodes without the others)"; \
	  fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,sandbox]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/kaic run $(ARGS)

$(ACTIONLINT):
	GOBIN=$(dir $@) GOFLAGS=-mod=mod go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

lint: setup $(ACTIONLINT)
	$(ACTIONLINT) .github/workflows/*.yaml
	$(BIN)/ruff check conformance tests scripts/bench scripts/repeat-runs
	$(BIN)/ruff format --check conformance tests scripts/bench scripts/repeat-runs
	$(BIN)/mypy conformance

unit: setup
	$(BIN)/pytest tests/unit -n 2 -q

integration: setup
	$(BIN)/pytest tests/integration -q -ra --durations=20

test: lint unit integration

# `make bench ARGS="..."`: where the time goes (builds, sandbox, profiles, checks); see scripts/bench
bench: setup
	$(BIN)/python scripts/bench $(ARGS)

# `make repeat-runs ARGS="--runs 10"`: one profile N times against one warm sandbox, with a tally
repeat-runs: setup
	$(BIN)/python scripts/repeat-runs $(ARGS)

clean:
	rm -rf $(VENV) reports/*/
