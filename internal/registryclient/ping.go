package registryclient

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// maxPingBody bounds the body of a /v2/ answer kept for reuse; registries
// answer with "{}" or a short error document.
const maxPingBody = 64 << 10

// pingShare answers go-containerregistry's repeated API version checks
// (GET /v2/, sent without credentials to learn whether the registry wants
// Basic or Bearer authentication) from the first answer of the same
// registry, for the lifetime of one operation.
//
// go-containerregistry pings once per repository it reads and once more per
// repository it writes, each with its own transport; the answer is the
// registry's, not the repository's, and the token scopes are negotiated
// afterwards. Sharing it saves one request per extra repository and one
// for the write of `ciel index create` (see test/bench's request counts).
// Only 200 and 401 answers to an unauthenticated GET are shared: anything
// else (errors, redirects, 5xx to be retried) goes to the registry again.
type pingShare struct {
	inner http.RoundTripper

	mu      sync.Mutex
	answers map[string]*pingAnswer // by scheme://host
}

type pingAnswer struct {
	once   sync.Mutex // held while the first request of a key is in flight
	done   bool
	status int
	proto  string
	header http.Header
	body   []byte
}

func newPingShare(inner http.RoundTripper) *pingShare {
	return &pingShare{inner: inner, answers: map[string]*pingAnswer{}}
}

func isPing(r *http.Request) bool {
	return r.Method == http.MethodGet && r.URL != nil && r.URL.Path == "/v2/" && r.URL.RawQuery == "" &&
		r.Header.Get("Authorization") == ""
}

func (p *pingShare) RoundTrip(r *http.Request) (*http.Response, error) {
	if !isPing(r) {
		return p.inner.RoundTrip(r)
	}
	key := r.URL.Scheme + "://" + r.URL.Host
	p.mu.Lock()
	a, ok := p.answers[key]
	if !ok {
		a = &pingAnswer{}
		p.answers[key] = a
	}
	p.mu.Unlock()

	a.once.Lock()
	defer a.once.Unlock()
	if a.done {
		return a.response(r), nil
	}
	resp, err := p.inner.RoundTrip(r)
	if err != nil || (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized) {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPingBody+1))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the registry's answer to %s: %w", r.URL, err)
	}
	if len(body) > maxPingBody {
		return nil, fmt.Errorf("the registry's answer to %s is over %d bytes", r.URL, maxPingBody)
	}
	a.done, a.status, a.proto, a.header, a.body = true, resp.StatusCode, resp.Proto, resp.Header.Clone(), body
	return a.response(r), nil
}

// response is a fresh copy of the kept answer for request r.
func (a *pingAnswer) response(r *http.Request) *http.Response {
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", a.status, http.StatusText(a.status)),
		StatusCode:    a.status,
		Proto:         a.proto,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        a.header.Clone(),
		Body:          io.NopCloser(bytes.NewReader(a.body)),
		ContentLength: int64(len(a.body)),
		Request:       r,
	}
}
