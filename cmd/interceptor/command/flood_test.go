package command

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
)

const (
	floodConcurrency = 20
	floodBytes       = 20_000_000 // one InterceptorRequest of the flood
	floodDuration    = 6 * time.Second
	floodMinRounds   = 2 // requests per flooding connection, at least
	// floodPeakRSS is the bound on the interceptor's peak RSS (VmHWM)
	// under the flood: half the Deployment's 512 Mi memory limit.
	floodPeakRSS = 256 << 20
)

// TestFloodOfLargeWrongTokenRequests is docs/security.md's "Request flood":
// 20 connections post 20 MB InterceptorRequests with a wrong token to the
// real interceptor binary over HTTPS on loopback, while a legitimate
// deployment posts ordinary pushes. The interceptor's peak RSS stays under
// floodPeakRSS and every legitimate delivery is answered and continued.
// The figures (peak RSS, p99 of the legitimate requests, how the flood was
// answered) are logged for docs/performance.md.
func TestFloodOfLargeWrongTokenRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary, floods for 6s")
	}
	base, cmd, logs, pool := startLocalTLS(t, "--log-level", "error", "--dedup-ttl", "1s")
	pid := cmd.Process.Pid
	hwmBefore := vmHWM(t, pid)

	params := map[string]any{"secretRef": map[string]any{"secretName": "gitlab-webhook", "secretKey": "token"},
		"eventTypes": []string{"Push Hook"}, "policy": "build-on-change"}
	envelope := func(body, token, uuid string) []byte {
		b, err := json.Marshal(triggersv1.InterceptorRequest{
			Body:              body,
			Header:            map[string][]string{"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {token}, "X-Gitlab-Event-Uuid": {uuid}},
			InterceptorParams: params,
			Context:           &triggersv1.TriggerContext{TriggerID: "namespaces/ci/triggers/build", EventURL: "http://el/"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The flood: a push whose commit message fills the request; JSON
	// escapes (quotes and newlines) make the envelope's string differ from
	// the body, as in real deliveries.
	msg := strings.Repeat("a \\\"quoted\\\" line\\n", (floodBytes-2000)/24)
	huge := envelope(`{"object_kind":"push","ref":"refs/heads/main","before":"9aa048df6ad5ec4d4fbc7ae9bb50a2e1b8c1d7b1","after":"c95fc90a6c6e4f4bb0fa2c4e30c2f1a0b5f5a0c1","commits":[{"id":"c95fc90a6c6e4f4bb0fa2c4e30c2f1a0b5f5a0c1","message":"`+msg+`"}]}`, "wrong", "flood")
	t.Logf("flood request: %d bytes", len(huge))
	legitBody, err := os.ReadFile("../../../interceptor/gitlab/testdata/push.json")
	if err != nil {
		t.Fatal(err)
	}

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: floodConcurrency + 1}
	client := &http.Client{Timeout: 60 * time.Second, Transport: tr}
	legitClient := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	var floodAnswers sync.Map // answer -> *atomic.Int64
	count := func(k string) {
		v, _ := floodAnswers.LoadOrStore(k, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	var flooding sync.WaitGroup
	for range floodConcurrency {
		flooding.Go(func() {
			deadline := time.Now().Add(floodDuration)
			for i := 0; i < floodMinRounds || time.Now().Before(deadline); i++ {
				resp, err := client.Post(base+"/gitlab", "application/json", bytes.NewReader(huge))
				if err != nil {
					count("transport error")
					continue
				}
				var ir triggersv1.InterceptorResponse
				_ = json.NewDecoder(resp.Body).Decode(&ir)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				count(fmt.Sprintf("HTTP %d %s", resp.StatusCode, ir.Status.Code))
				if ir.Continue {
					t.Error("a wrong-token request was continued")
				}
			}
		})
	}
	floodDone := make(chan struct{})
	go func() { flooding.Wait(); close(floodDone) }()

	var lat []time.Duration
	for i := 0; ; i++ {
		select {
		case <-floodDone:
		default:
			start := time.Now()
			resp, err := legitClient.Post(base+"/gitlab", "application/json",
				bytes.NewReader(envelope(string(legitBody), "s3cret", "legit-"+strconv.Itoa(i))))
			if err != nil {
				t.Fatalf("legitimate delivery %d during the flood: %v", i, err)
			}
			var ir triggersv1.InterceptorResponse
			derr := json.NewDecoder(resp.Body).Decode(&ir)
			resp.Body.Close()
			lat = append(lat, time.Since(start))
			if resp.StatusCode != http.StatusOK || derr != nil || !ir.Continue {
				t.Errorf("legitimate delivery %d during the flood: HTTP %d, %v, %+v", i, resp.StatusCode, derr, ir.Status)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		break
	}
	hwm := vmHWM(t, pid)
	slices.Sort(lat)
	var answers []string
	floodAnswers.Range(func(k, v any) bool {
		answers = append(answers, fmt.Sprintf("%s: %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	slices.Sort(answers)
	t.Logf("peak RSS (VmHWM): %d MiB before the flood, %d MiB after; legitimate deliveries during the flood: %d, p50 %s, p99 %s, max %s; flood answered: %s",
		hwmBefore>>20, hwm>>20, len(lat), pct(lat, .5), pct(lat, .99), pct(lat, 1), strings.Join(answers, ", "))
	if len(lat) < 5 {
		t.Errorf("only %d legitimate deliveries during the flood; want at least 5", len(lat))
	}
	if hwm > floodPeakRSS {
		t.Errorf("peak RSS %d MiB under the flood; want at most %d MiB", hwm>>20, floodPeakRSS>>20)
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("the token appears in the logs")
	}
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p)].Round(time.Millisecond)
}

// vmHWM reads the peak resident set size of a process, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the interceptor's memory: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}
