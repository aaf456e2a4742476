// Command load drives the ciel interceptor with InterceptorRequests over
// HTTPS at a fixed rate and reports latency percentiles and errors. It is
// run by test/load/run.sh against the real binary:
//
//	bash test/load/run.sh            # 20,000 requests at 500/s
//	N=50000 RATE=1000 bash test/load/run.sh
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
)

func main() {
	url := flag.String("url", "https://127.0.0.1:8443/gitlab", "interceptor URL")
	caFile := flag.String("ca", "", "CA certificate of the interceptor")
	payload := flag.String("payload", "interceptor/gitlab/testdata/push.json", "GitLab push payload")
	n := flag.Int("n", 20000, "requests")
	rate := flag.Int("rate", 500, "requests per second")
	conc := flag.Int("c", 32, "concurrent connections")
	flag.Parse()
	if err := run(*url, *caFile, *payload, *n, *rate, *conc); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(url, caFile, payload string, n, rate, conc int) error {
	body, err := os.ReadFile(payload)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		pool.AppendCertsFromPEM(pem)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
	params := map[string]any{"secretRef": map[string]any{"secretName": "gitlab-webhook", "secretKey": "token"},
		"eventTypes": []string{"Push Hook"}, "policy": "build-on-change"}

	lat := make([]time.Duration, n)
	var errs, notContinue atomic.Int64
	var firstErr atomic.Value
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := range jobs {
				req, _ := json.Marshal(triggersv1.InterceptorRequest{
					Body: string(body),
					Header: map[string][]string{"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {"s3cret"},
						"X-Gitlab-Event-Uuid": {fmt.Sprintf("load-%d-%d", time.Now().UnixNano(), i)}},
					InterceptorParams: params,
					Context:           &triggersv1.TriggerContext{TriggerID: "namespaces/ci/triggers/build", EventURL: "http://el/"},
				})
				start := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(req))
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				var ir triggersv1.InterceptorResponse
				derr := json.NewDecoder(resp.Body).Decode(&ir)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(start)
				switch {
				case resp.StatusCode != 200 || derr != nil:
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("HTTP %d %v", resp.StatusCode, derr))
				case !ir.Continue:
					notContinue.Add(1)
					firstErr.CompareAndSwap(nil, ir.Status.Message)
				}
			}
		})
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range n {
		// Absolute schedule: no drift from ticker jitter.
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)

	done := slices.DeleteFunc(slices.Clone(lat), func(d time.Duration) bool { return d == 0 })
	slices.Sort(done)
	pct := func(p float64) time.Duration {
		if len(done) == 0 {
			return 0
		}
		return done[int(float64(len(done)-1)*p)]
	}
	fmt.Printf("requests: %d in %s (%.0f req/s)\n", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Printf("latency: p50 %s  p90 %s  p99 %s  max %s\n", pct(.5), pct(.9), pct(.99), pct(1))
	fmt.Printf("errors: %d  not continued: %d\n", errs.Load(), notContinue.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Printf("first problem: %v\n", e)
	}
	if errs.Load() > 0 || notContinue.Load() > 0 {
		return fmt.Errorf("%d errors, %d requests not continued", errs.Load(), notContinue.Load())
	}
	return nil
}
