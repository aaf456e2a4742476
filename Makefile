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

bench:
	$(GO) test ./test/bench -run '^$$' -bench . -benchmem

build:
	$(GO) build -o bin/ ./cmd/...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...
