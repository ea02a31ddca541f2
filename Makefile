# ardary-pipeline — `make help` lists the targets. Every target sets up what it needs first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-8)


.PHONY: help setup system jars tools test lint audit typecheck unit integration demo dev broker bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,test,bench]"
	@touch $@

system: ## install the Debian packages the tests use (PostgreSQL, wrk, Chromium), if missing
	@bash deploy/install-system-packages.sh

HELM := $(HOME)/.cache/ardary-pipeline/bin/helm
HELM_VERSION := v3.22.0

tools: ## helm (chart rendering test), built from the Go module proxy once (skipped without go)
	@if [ -x $(HELM) ]; then :; \
	elif command -v go >/dev/null; then \
	  echo "building helm $(HELM_VERSION) from the Go module proxy (once)"; \
	  GOBIN=$(dir $(HELM)) GOFLAGS=-mod=mod go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); \
	else echo "go not found: the Helm chart test will be skipped"; fi

setup: $(STAMP) system jars tools ## venv + packages + Kafka jars + system packages + tools

jars: $(STAMP) ## fetch Apache Kafka's jars from Maven Central into ~/.cache (once)
	@$(BIN)/python -c "from pipeline.devtools.kafkajars import ensure_jars; print('kafka jars:', ensure_jars())"

lint: $(STAMP) ## ruff (lint + format), import-linter (the layers), deptry (declared dependencies), pip-audit
	$(BIN)/ruff check pipeline tests
	$(BIN)/ruff format --check pipeline tests
	$(BIN)/lint-imports
	$(BIN)/deptry .
	$(BIN)/python -m pipeline.devtools.audit

audit: $(STAMP) ## pip-audit: report known vulnerabilities, fail on one with a fix (skips, saying so, offline)
	$(BIN)/python -m pipeline.devtools.audit

typecheck: $(STAMP) ## mypy --strict on pipeline/
	$(BIN)/mypy

test: setup lint typecheck ## THE test command: set-up, lint, types, then the whole suite
	$(BIN)/python -m tests.shards

unit: $(STAMP) ## only the tests that need no broker
	$(BIN)/python -m pytest -q -m "not integration" tests/unit tests/agents tests/bench

integration: $(STAMP) jars ## only the tests against the real broker (and real HTTP)
	$(BIN)/python -m pytest -q -m integration tests/integration

demo: $(STAMP) jars ## the whole pipeline on this machine: broker, simulator, ingress, workers, sink
	$(BIN)/ardary-pipeline demo

dev: $(STAMP) jars ## the same stack, kept running until Ctrl-C
	$(BIN)/ardary-pipeline dev

broker: $(STAMP) jars ## a local Kafka broker until Ctrl-C
	$(BIN)/ardary-pipeline broker

bench: $(STAMP) jars ## list the benchmarks; `make bench NAME=ingress` runs one (README: Performance)
	@if [ -z "$(NAME)" ]; then \
	  $(BIN)/ardary-pipeline bench --help; \
	  echo; echo "Run one with: make bench NAME=<name>   (its flags: $(BIN)/ardary-pipeline bench <name> --help)"; \
	else $(BIN)/ardary-pipeline bench $(NAME); fi

clean: ## remove the venv and local data (not the Kafka jar cache)
	rm -rf $(VENV) data .runs
