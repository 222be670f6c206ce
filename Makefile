# seedscope: the two commands a newcomer runs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
export ONNXRUNTIME_NODE_INSTALL := skip

.PHONY: all install build native test demo bench clean

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

install: node_modules/.package-lock.json

# package.json's build: tsc, then chmod +x dist/cli.js, which runs through its #! line (it tunes the allocator).
build: install native
	npm run --silent build

# Native addons: the OpenBLAS GEMM for the correlate stage (native/sgemm/README.md) and the per-element
# statistics kernels (native/kernels/README.md). Without libopenblas-dev or a C compiler each prints one line
# and the build goes on: seedscope then picks a slower backend (src/model/gemm.ts, src/stats/kernels.ts).
native: native/sgemm/build/Release/sgemm.node native/kernels/build/Release/kernels.node

native/sgemm/build/Release/sgemm.node: native/sgemm/sgemm.c native/sgemm/binding.gyp native/sgemm/build.sh native/build-addon.sh
	native/sgemm/build.sh

native/kernels/build/Release/kernels.node: $(wildcard native/kernels/*.c native/kernels/*.h) native/kernels/binding.gyp native/kernels/build.sh native/build-addon.sh
	native/kernels/build.sh

test: build
	npx vitest run

demo: build
	dist/cli.js run --config pipeline.config.yaml
	@echo
	dist/cli.js summary --config pipeline.config.yaml

# Benchmarks (bench/README.md), one after another: each prints its numbers and its ratios against a peer measured
# in the same run (the machine is shared, so absolute numbers drift). A benchmark that fails does not stop the
# others; the target fails at the end, naming it. extract, correlate, screened and streamed take a few minutes each
# (longer on a first run, which extracts their projects).
BENCHMARKS := bench/forward.ts bench/tokenize.bench.mjs bench/gemm.ts bench/extract.ts bench/correlate.ts bench/screened.ts bench/streamed.ts

bench: build
	@failed=(); \
	for b in $(BENCHMARKS); do \
	  echo; echo "################ $$b ################"; \
	  if [[ ! -f $$b ]]; then echo "$$b: not there yet, skipped"; continue; fi; \
	  start=$$SECONDS; \
	  if [[ $$b == *.mjs ]]; then node $$b || failed+=($$b); else npx tsx $$b || failed+=($$b); fi; \
	  echo "($$b: $$((SECONDS - start)) s)"; \
	done; \
	if (( $${#failed[@]} )); then echo "make bench: failed: $${failed[*]}"; exit 1; fi

clean:
	rm -rf dist outputs/*

# Bundled seed families (data/corpus, data/models): run by hand once, never in CI. See tools/train-seeds/README.md.
.PHONY: train-seeds
train-seeds:
	$(MAKE) -C tools/train-seeds
