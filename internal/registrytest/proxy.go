package registrytest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Kind classifies a registry API request by its path.
type Kind string

// Request kinds of the distribution API.
const (
	KindPing      Kind = "ping"      // /v2/
	KindManifest  Kind = "manifest"  // /v2/NAME/manifests/REF
	KindBlob      Kind = "blob"      // /v2/NAME/blobs/DIGEST
	KindUpload    Kind = "upload"    // /v2/NAME/blobs/uploads/... (POST also mounts)
	KindTags      Kind = "tags"      // /v2/NAME/tags/list
	KindReferrers Kind = "referrers" // /v2/NAME/referrers/DIGEST
	KindOther     Kind = "other"
)

// KindOf classifies a request path.
func KindOf(path string) Kind {
	switch {
	case path == "/v2/" || path == "/v2":
		return KindPing
	case !strings.HasPrefix(path, "/v2/"):
		return KindOther
	case strings.Contains(path, "/blobs/uploads/") || strings.HasSuffix(path, "/blobs/uploads"):
		return KindUpload
	case strings.Contains(path, "/manifests/"):
		return KindManifest
	case strings.Contains(path, "/blobs/"):
		return KindBlob
	case strings.HasSuffix(path, "/tags/list"):
		return KindTags
	case strings.Contains(path, "/referrers/"):
		return KindReferrers
	}
	return KindOther
}

// Request is one request seen by a Proxy.
type Request struct {
	Method string
	Path   string
	Query  string
	Kind   Kind
	// Status is the status code sent back; 0 if the connection was dropped.
	Status int
	// Injected is true when a Fault answered instead of the registry.
	Injected bool
}

// IsMount reports whether r is a cross-repository blob mount request.
func (r Request) IsMount() bool {
	if r.Method != http.MethodPost || r.Kind != KindUpload {
		return false
	}
	q, _ := url.ParseQuery(r.Query)
	return q.Get("mount") != "" && q.Get("from") != ""
}

func (r Request) String() string {
	s := r.Method + " " + r.Path
	if r.Query != "" {
		s += "?" + r.Query
	}
	if r.Injected {
		s += " [injected]"
	}
	return s + " -> " + strconv.Itoa(r.Status)
}

// Fault makes the proxy answer matching requests itself, Times times.
type Fault struct {
	// Method and Kind, when set, restrict which requests match; PathContains
	// further restricts by a substring of the path.
	Method       string
	Kind         Kind
	PathContains string
	// Status is the status code to answer with (e.g. 500, 429).
	Status int
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Drop closes the connection without an answer instead.
	Drop bool
	// Times is how many matching requests are answered this way.
	Times int
}

func (f *Fault) matches(r *http.Request) bool {
	return f.Times > 0 &&
		(f.Method == "" || f.Method == r.Method) &&
		(f.Kind == "" || f.Kind == KindOf(r.URL.Path)) &&
		(f.PathContains == "" || strings.Contains(r.URL.Path, f.PathContains))
}

// Proxy is a reverse proxy in front of a registry that records every request
// and can inject faults.
type Proxy struct {
	// Host is the proxy's "127.0.0.1:PORT".
	Host string

	mu     sync.Mutex
	reqs   []Request
	faults []*Fault
}

// NewProxy starts a plain-HTTP proxy on loopback in front of r and stops it
// when the test ends. Location headers stay valid because the registry
// builds them from the Host header, which the proxy passes through.
func NewProxy(t testing.TB, r *Registry) *Proxy {
	t.Helper()
	target, err := url.Parse(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport: r.Client().Transport,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := Request{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Kind: KindOf(req.URL.Path)}
		if f := p.takeFault(req); f != nil {
			rec.Injected = true
			if f.Drop {
				p.record(rec)
				if hj, ok := w.(http.Hijacker); ok {
					if conn, _, err := hj.Hijack(); err == nil {
						conn.Close()
						return
					}
				}
				panic(http.ErrAbortHandler)
			}
			rec.Status = f.Status
			p.record(rec)
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.Status)
			fmt.Fprintf(w, `{"errors":[{"code":"UNKNOWN","message":"injected by registrytest: %d"}]}`, f.Status)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(sw, req)
		rec.Status = sw.status
		p.record(rec)
	}))
	t.Cleanup(srv.Close)
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// Inject adds a fault; faults are consulted in the order they were added.
func (p *Proxy) Inject(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, &f)
}

func (p *Proxy) takeFault(r *http.Request) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.faults {
		if f.matches(r) {
			f.Times--
			c := *f
			return &c
		}
	}
	return nil
}

func (p *Proxy) record(r Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = append(p.reqs, r)
}

// Requests returns the requests seen since the last Reset, in order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.reqs...)
}

// Writes returns the recorded requests that may change the registry:
// every method but GET and HEAD.
func (p *Proxy) Writes() []Request {
	var out []Request
	for _, r := range p.Requests() {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			out = append(out, r)
		}
	}
	return out
}

// Injected returns how many recorded requests a Fault answered.
func (p *Proxy) Injected() int {
	n := 0
	for _, r := range p.Requests() {
		if r.Injected {
			n++
		}
	}
	return n
}

// Reset forgets the recorded requests and any faults left.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = nil
	p.faults = nil
}

// Count returns how many recorded requests have the method (any if empty)
// and kind (any if empty).
func (p *Proxy) Count(method string, kind Kind) int {
	n := 0
	for _, r := range p.Requests() {
		if (method == "" || r.Method == method) && (kind == "" || r.Kind == kind) {
			n++
		}
	}
	return n
}

// Counts summarises the recorded requests as "METHOD kind" → count, e.g.
// "GET manifest": 2, plus "POST mount" for cross-repository mounts.
func (p *Proxy) Counts() map[string]int {
	m := map[string]int{}
	for _, r := range p.Requests() {
		k := r.Method + " " + string(r.Kind)
		if r.IsMount() {
			k = "POST mount"
		}
		m[k]++
	}
	return m
}

// Log formats the recorded requests one a line, for failure messages.
func (p *Proxy) Log() string {
	var b strings.Builder
	for _, r := range p.Requests() {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// SortedCounts formats Counts deterministically.
func (p *Proxy) SortedCounts() string {
	m := p.Counts()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
