#!/usr/bin/env bash
# Load test of the real interceptor binary over HTTPS on loopback:
# N requests (default 20000) at RATE/s (default 500), then p50/p99 latency,
# errors, RSS before/after and goroutines after.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-20000} RATE=${RATE:-500}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/interceptor" ./cmd/interceptor
go build -o "$work/load" ./test/load
mkdir -p "$work/secrets/gitlab-webhook"
printf s3cret > "$work/secrets/gitlab-webhook/token"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null

"$work/interceptor" --local --http-addr 127.0.0.1:0 --policies policies --secret-dir "$work/secrets" \
  --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key" --log-level warn > "$work/out" 2> "$work/log" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^listening on //p' "$work/out")
rss() { awk '/VmRSS/ {print $2 " kB"}' /proc/$pid/status; }
echo "interceptor at $base (pid $pid), RSS before: $(rss)"
"$work/load" -url "$base/gitlab" -ca "$work/tls.crt" -payload interceptor/gitlab/testdata/push.json -n "$N" -rate "$RATE"
echo "RSS after: $(rss)"
curl -s --cacert "$work/tls.crt" "$base/metrics" | grep -E '^go_goroutines|^ciel_interceptor_requests_total'
