# ciel — the two commands the README promises:
#   make demo   runs the main job on bundled defaults (no cluster needed)
#   make test   runs the whole test suite (installs what it needs)
GO ?= go

.PHONY: demo test unit e2e bench fmt vet build release tools

# Release: ko builds the images, hack/release.sh writes dist/release.yaml.
#   make release KO_DOCKER_REPO=registry.example.com/ciel VERSION=v0.2.0
# ko (and kustomize when neither kustomize nor kubectl is installed) are
# installed into bin/ from the Go module proxy; nothing else is needed.
BIN := $(CURDIR)/bin
KO_VERSION := v0.18.0
KUSTOMIZE_VERSION := v5.5.0
KO := $(BIN)/ko-$(KO_VERSION)
KUSTOMIZE ?= $(shell command -v kustomize 2>/dev/null || (command -v kubectl >/dev/null || echo $(BIN)/kustomize-$(KUSTOMIZE_VERSION)))
VERSION ?= $(shell git describe --tags --match 'v*' --abbrev=0 2>/dev/null)

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

# tools installs what `make release` needs into bin/.
tools: $(KO) $(filter $(BIN)/%,$(KUSTOMIZE))

release: $(KO) $(filter $(BIN)/%,$(KUSTOMIZE))
	KO=$(KO) KUSTOMIZE=$(KUSTOMIZE) KO_DOCKER_REPO=$(KO_DOCKER_REPO) VERSION=$(VERSION) bash hack/release.sh

$(KO):
	GOBIN=$(BIN)/.ko-$(KO_VERSION) $(GO) install github.com/google/ko@$(KO_VERSION)
	mv $(BIN)/.ko-$(KO_VERSION)/ko $@ && rmdir $(BIN)/.ko-$(KO_VERSION)

$(BIN)/kustomize-$(KUSTOMIZE_VERSION):
	GOBIN=$(BIN)/.kustomize-$(KUSTOMIZE_VERSION) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(BIN)/.kustomize-$(KUSTOMIZE_VERSION)/kustomize $@ && rmdir $(BIN)/.kustomize-$(KUSTOMIZE_VERSION)
