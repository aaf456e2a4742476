# ciel — the two commands the README promises:
#   make demo   runs the main job on bundled defaults (no cluster needed)
#   make test   runs the whole test suite (installs what it needs)
GO ?= go

.PHONY: demo test unit e2e bench fmt vet build

demo:
	$(GO) run ./cmd/cel-eval --policy policies/build-on-change.yaml \
		-r policies/testdata/push-src.http

test:
	bash test/run.sh

unit:
	CIEL_SKIP_E2E=1 bash test/run.sh

e2e:
	$(MAKE) -C test/e2e e2e

# make bench prints one table: each figure, its anchor measured in the same
# run (Triggers, encoding/json, crane) and the ratio, medians of BENCH_COUNT
# runs; the raw `go test` output is kept in BENCH_OUT.
BENCH_COUNT ?= 5
BENCH_OUT ?= bin/bench.txt
bench:
	@mkdir -p $(dir $(BENCH_OUT))
	$(GO) test ./test/bench -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) > $(BENCH_OUT) || { cat $(BENCH_OUT); exit 1; }
	@$(GO) run ./test/bench/cmd/benchtable < $(BENCH_OUT)

build:
	$(GO) build -o bin/ ./cmd/...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...
