# seedscope: the two commands a newcomer runs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
export ONNXRUNTIME_NODE_INSTALL := skip

.PHONY: all install build test demo bench clean

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

install: node_modules/.package-lock.json

build: install
	npx tsc -p tsconfig.json

test: build
	npx vitest run

demo: build
	@echo "make demo: not yet available (the bundled seed families and the demo pipeline land with issue 6)."
	@echo "What exists today: seedscope inspect (see node dist/cli.js --help)."

bench: build
	@echo "bench: no benchmarks yet"

clean:
	rm -rf dist outputs/*
