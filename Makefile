# billfn — `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
PKGS  ?= ./...
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/billfn?sslmode=disable

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

services: ## start PostgreSQL and Redis when they are not running (installs them when absent)
	@.ci/services.sh

fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet $(PKGS)

test: services fmt-check vet ## everything CI checks: gofmt, go vet, go test -race against real Postgres, Redis and kfake
	$(GO) test -race -count=1 $(PKGS)

fuzz: services ## run every fuzz target for FUZZTIME each (default 20s)
	@grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do \
	  dir=$$(dirname $$f); \
	  for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/func //'); do \
	    echo "== $$dir $$fn"; $(GO) test $$dir -run='^$$' -fuzz="^$$fn$$" -fuzztime=$${FUZZTIME:-20s} || exit 1; \
	  done; \
	done

build: ## build every binary into bin/
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/... $$(ls -d ./functions/*/ 2>/dev/null)

migrate: services ## apply migrations to DATABASE_URL (creates the database)
	$(GO) run ./cmd/migrate up

token: ## print a dev JWT (ROLE=admin|service|customer, SUB=<uuid>)
	@$(GO) run ./cmd/devtoken -role $${ROLE:-admin} $${SUB:+-sub $$SUB}

clean: ## remove build output
	rm -rf bin .run

.PHONY: help services fmt-check vet test fuzz build migrate token clean
