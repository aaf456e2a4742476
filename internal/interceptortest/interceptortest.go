// Package interceptortest drives a running interceptor over HTTP in tests,
// whether the real binary or interceptor/service.Run in process: the
// address it prints, its probes and metrics, and InterceptorRequests
// posted as Tekton Triggers' EventListener posts them.
package interceptortest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
)

// Address reads the line "listening on URL" the interceptor prints first
// and returns URL; the rest of r is drained in the background so that
// the interceptor never blocks writing to it.
func Address(r io.Reader) (string, error) {
	br := bufio.NewReader(r)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading the address the interceptor prints: %w", err)
	}
	go io.Copy(io.Discard, br) //nolint:errcheck // draining only
	return strings.TrimSpace(strings.TrimPrefix(line, "listening on ")), nil
}

// Get fetches url and returns the status code and body; a failed request
// fails t.
func Get(t testing.TB, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Post posts req to base's /gitlab and decodes the answer; a failed
// request or an answer that is not an InterceptorResponse fails t.
func Post(t testing.TB, client *http.Client, base string, req triggersv1.InterceptorRequest) triggersv1.InterceptorResponse {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(base+"/gitlab", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ir triggersv1.InterceptorResponse
	if err := json.NewDecoder(resp.Body).Decode(&ir); err != nil {
		t.Fatal(err)
	}
	return ir
}
