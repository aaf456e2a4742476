#!/usr/bin/env bash
# The whole test suite of ciel, runnable on a fresh machine (Debian, Go installed):
# installs the real servers the integration tests talk to, then runs formatting and
# vet checks, every Go test (unit, integration against real processes, policy cases,
# fuzz seed corpora), the benchmarks once each, and the end-to-end suite on a real
# control plane (skip it with CIEL_SKIP_E2E=1).
set -euo pipefail
cd "$(dirname "$0")/.."
export CIEL_REQUIRE_REAL=1   # integration tests fail, rather than skip, when a real server is missing
export GOFLAGS=${GOFLAGS:--p=2}

step() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v etcd >/dev/null || need+=(etcd-server)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v git >/dev/null || need+=(git)
command -v openssl >/dev/null || need+=(openssl)
command -v unshare >/dev/null || need+=(util-linux)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)   # the e2e Kaniko image's CA bundle
command -v dpkg-deb >/dev/null || need+=(dpkg)                          # unpacks the e2e images' busybox and git
# The e2e cluster's nodes and network (test/e2e/README.md).
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)          # the arm64 node's kubelet and RUN lines
command -v iptables >/dev/null || need+=(iptables)                       # kube-proxy, inside the sealed namespace
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if ! command -v kubectl >/dev/null && ! command -v kustomize >/dev/null; then
  step "installing kustomize (renders config/ in the manifest tests)"
  go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0
  export PATH="$(go env GOPATH)/bin:$PATH"
fi

step "make tools (ko for make release, which TestRelease runs against the real registry)"
make tools

# The end-to-end suite's host phase (building a Kubernetes cluster's
# binaries, compiling Tekton, downloading packages) runs in the background
# from here, overlapping the tests below, which leave the CPU idle while
# they wait on their real servers.
prepare_log=$(mktemp)
prepare_pid=""
if [ "${CIEL_SKIP_E2E:-0}" != 1 ] && [ -f test/e2e/Makefile ]; then
  step "end-to-end preparation started in the background (log: $prepare_log)"
  make -C test/e2e prepare >"$prepare_log" 2>&1 &
  prepare_pid=$!
fi

step "gofmt"
bad=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change:"; echo "$bad"; exit 1; fi

step "go vet"
go vet ./...

step "go test (unit + integration against real processes)"
go test -count=1 -timeout 30m ./...

step "policies: cel-eval test"
go run ./cmd/cel-eval test policies/

step "benchmarks run once"
go test -count=1 -run '^$' -bench . -benchtime 1x ./... >/dev/null

if [ "${CIEL_SKIP_E2E:-0}" = 1 ]; then
  step "end-to-end suite skipped (CIEL_SKIP_E2E=1)"
elif [ -f test/e2e/Makefile ]; then
  step "end-to-end: waiting for its preparation"
  if ! wait "$prepare_pid"; then cat "$prepare_log"; echo "end-to-end preparation failed"; exit 1; fi
  tail -n 3 "$prepare_log"
  step "end-to-end on a real cluster"
  make -C test/e2e e2e
else
  step "end-to-end suite: not in this checkout yet (test/e2e/Makefile missing): NOT RUN"
fi
step "all tests passed"
