package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"google.golang.org/grpc/codes"
)

// envelopeCases are InterceptorRequests as the EventListener sends them
// and as an attacker may shape them.
var envelopeCases = []struct {
	name, in string
	wantErr  bool
}{
	{"as the EventListener sends it", `{"body":"{\"object_kind\":\"push\",\"message\":\"line\\nnext \\\"q\\\"\"}","header":{"X-Gitlab-Event":["Push Hook"]},"extensions":{"a":1},"interceptor_params":{"policy":"p"},"context":{"event_url":"http://el/","event_id":"e","trigger_id":"namespaces/n/triggers/t"}}`, false},
	{"no escapes", `{"body":"{}","context":null}`, false},
	{"unicode escapes and pairs", `{"body":"\u00e9\ud83d\ude00 \/ \b\f\r\t"}`, false},
	{"lone surrogates", `{"body":"a\ud800b\udc00c\ud800\u0041\ud800"}`, false},
	{"raw UTF-8", `{"body":"été 😀"}`, false},
	{"invalid UTF-8 in the body", "{\"body\":\"a\xffb\\n\"}", false},
	{"keys in another case", `{"Body":"x","HEADER":{"A":["b"]},"Interceptor_Params":{"k":true}}`, false},
	{"escaped key", `{"b\u006fdy":"x"}`, false},
	{"unknown keys skipped", `{"other":{"deep":[1,2,{"x":null}],"s":"\"}"},"n":-1.5e3,"t":true,"body":"x"}`, false},
	{"duplicate keys: the last wins", `{"body":"a","body":"b","header":{"A":["1"]},"header":{"B":["2"]}}`, false},
	{"null body", `{"body":null}`, false},
	{"empty", ` { } `, false},
	{"whitespace", " {\n\t\"body\" :\r \"x\" \n} \n", false},
	{"not an object", `["body"]`, true},
	{"trailing data", `{"body":"x"} {}`, true},
	{"unterminated body", `{"body":"abc`, true},
	{"bad escape", `{"body":"a\qb"}`, true},
	{"short unicode escape", `{"body":"\u12"}`, true},
	{"control character", "{\"body\":\"a\nb\"}", true},
	{"body not a string", `{"body":12}`, true},
	{"header of the wrong shape", `{"header":{"A":"b"}}`, true},
	{"bad number", `{"x":-,"body":"x"}`, true},
	{"missing colon", `{"body" "x"}`, true},
	{"missing comma", `{"body":"x" "header":{}}`, true},
	{"trailing comma", `{"body":"x",}`, true},
}

// request returns the envelope as Triggers' type, to compare with
// encoding/json.
func (e *envelope) request() *triggersv1.InterceptorRequest {
	return &triggersv1.InterceptorRequest{Body: string(e.body()), Header: e.header, Extensions: e.extensions,
		InterceptorParams: e.params, Context: e.context}
}

// TestEnvelopeMatchesEncodingJSON reads each case with parseEnvelope and
// with encoding/json into Triggers' type: both fail, or both read the same.
func TestEnvelopeMatchesEncodingJSON(t *testing.T) {
	for _, tc := range envelopeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEnvelope([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseEnvelope: error %v, want error %v", err, tc.wantErr)
			}
			var want triggersv1.InterceptorRequest
			jerr := json.Unmarshal([]byte(tc.in), &want)
			if (jerr != nil) != tc.wantErr {
				t.Fatalf("encoding/json: error %v, want error %v", jerr, tc.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(&want, got.request()); diff != "" {
				t.Errorf("parseEnvelope differs from encoding/json (-json +envelope):\n%s", diff)
			}
		})
	}
}

// TestEnvelopeBodyInPlace: the body is a slice of the request buffer, not
// a copy, and unescaping twice changes nothing.
func TestEnvelopeBodyInPlace(t *testing.T) {
	buf := []byte(`{"header":{},"body":"{\"a\":\"b\\n\"}"}`)
	e, err := parseEnvelope(buf)
	if err != nil {
		t.Fatal(err)
	}
	body := e.body()
	if string(body) != `{"a":"b\n"}` {
		t.Fatalf("body %q", body)
	}
	if &body[0] != &buf[bytes.IndexByte(buf, 'b')+7] {
		t.Error("the body is a copy, not a slice of the request buffer")
	}
	if again := e.body(); string(again) != string(body) {
		t.Errorf("second call: %q", again)
	}
}

// FuzzEnvelope: parseEnvelope accepts what encoding/json accepts (within
// its nesting bound) and reads it the same.
func FuzzEnvelope(f *testing.F) {
	for _, tc := range envelopeCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var want triggersv1.InterceptorRequest
		jerr := json.Unmarshal(in, &want)
		got, err := parseEnvelope(bytes.Clone(in))
		if err != nil && strings.Contains(err.Error(), "nested deeper") {
			return
		}
		if jerr == nil && bytes.HasPrefix(bytes.TrimSpace(in), []byte("null")) {
			return // encoding/json reads a top-level null as an empty request
		}
		if (err == nil) != (jerr == nil) {
			t.Fatalf("parseEnvelope error %v, encoding/json error %v", err, jerr)
		}
		if err != nil {
			return
		}
		if diff := cmp.Diff(&want, got.request()); diff != "" {
			t.Errorf("(-json +envelope):\n%s", diff)
		}
	})
}

// buildRequest is the InterceptorRequest of push.json for the policy
// build-on-change with the webhook's token, marshalled, its body passed
// through edit first (nil: unchanged).
func buildRequest(t testing.TB, edit func(body string) string, opts ...reqOpt) []byte {
	t.Helper()
	r := request(t, "push.json", "Push Hook", map[string]any{"secretRef": tokenRef, "policy": "build-on-change"}, opts...)
	if edit != nil {
		r.Body = edit(r.Body)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// padded adds a "padding" field holding pad before the body's object_kind.
func padded(pad string) func(body string) string {
	return func(body string) string {
		return strings.Replace(body, `"object_kind"`, `"padding":"`+pad+`","object_kind"`, 1)
	}
}

// bounded is a server of f's engine, policies and Secrets with these bounds
// of one request and of the requests in flight.
func (f *fixture) bounded(t testing.TB, maxRequest, maxInFlight int64) *Server {
	t.Helper()
	srv, err := New(Config{Engine: f.srv.cfg.Engine, Policies: f.srv.cfg.Policies, Secrets: f.srv.cfg.Secrets,
		MaxRequestBytes: maxRequest, MaxInFlightBytes: maxInFlight})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestInFlightBudget: past the budget a large request is answered
// Unavailable (503, unread) while a small delivery still fits in the part
// kept for small requests; the budget is whole again afterwards.
func TestInFlightBudget(t *testing.T) {
	f := newFixture(t)
	srv := f.bounded(t, 4<<20, 16<<20)
	if _, err := New(Config{Engine: f.srv.cfg.Engine, MaxRequestBytes: 10 << 20, MaxInFlightBytes: 12 << 20}); err == nil {
		t.Error("a budget smaller than one request plus the reserve was accepted")
	}
	// A flood holds all but the reserve.
	if !srv.budget.take(8 << 20) {
		t.Fatal("could not take the flood's share")
	}
	post := func(req []byte) (int, http.Header, triggersv1.InterceptorResponse) {
		w, ir := serve(t, srv, httptest.NewRequest(http.MethodPost, "/gitlab", bytes.NewReader(req)))
		return w.Code, w.Header(), ir
	}
	lb := buildRequest(t, padded(strings.Repeat("x", 2<<20)))
	code, h, ir := post(lb)
	if code != http.StatusServiceUnavailable || ir.Status.Code != codes.Unavailable || h.Get("Retry-After") == "" ||
		!strings.Contains(ir.Status.Message, "retry later") {
		t.Errorf("large request past the budget: %d %v %+v", code, h, ir.Status)
	}
	if code, _, ir := post(buildRequest(t, nil)); code != http.StatusOK || !ir.Continue {
		t.Errorf("small delivery during the flood: %d %+v", code, ir.Status)
	}
	srv.budget.give(8 << 20)
	if code, _, ir := post(lb); code != http.StatusOK || !ir.Continue {
		t.Errorf("large request after the flood: %d %+v", code, ir.Status)
	}
	if n := srv.InFlightBytes(); n != 0 {
		t.Errorf("%d bytes still held after the requests", n)
	}
}

// TestWrongTokenBodyNotRead: a wrong token is refused before the body is
// looked at: a body that is not even JSON gets the token's error.
func TestWrongTokenBodyNotRead(t *testing.T) {
	f := newFixture(t)
	b := buildRequest(t, func(string) string { return "not json \x00" }, withHeader("X-Gitlab-Token", "wrong"))
	w, ir := serve(t, f.srv, httptest.NewRequest(http.MethodPost, "/gitlab", bytes.NewReader(b)))
	if ir.Continue || ir.Status.Code != codes.InvalidArgument || !strings.Contains(strings.ToLower(ir.Status.Message), "token") {
		t.Errorf("wrong token: %s", w.Body)
	}
}

// TestUnknownLength: a request without Content-Length (chunked) is read in
// budgeted steps and bounded by MaxRequestBytes as well.
func TestUnknownLength(t *testing.T) {
	srv := newFixture(t).bounded(t, 64<<10, 16<<20)
	post := func(req []byte) (int, triggersv1.InterceptorResponse) {
		r := httptest.NewRequest(http.MethodPost, "/gitlab", io.MultiReader(bytes.NewReader(req)))
		if r.ContentLength != -1 {
			t.Fatalf("content length %d, want unknown", r.ContentLength)
		}
		w, ir := serve(t, srv, r)
		return w.Code, ir
	}
	if code, ir := post(buildRequest(t, nil)); code != http.StatusOK || !ir.Continue {
		t.Errorf("small chunked request: %d %+v", code, ir.Status)
	}
	lb := buildRequest(t, func(body string) string { return strings.Repeat(" ", 100<<10) + body })
	if code, ir := post(lb); code != http.StatusRequestEntityTooLarge || ir.Status.Code != codes.InvalidArgument {
		t.Errorf("oversized chunked request: %d %+v", code, ir.Status)
	}
	if n := srv.InFlightBytes(); n != 0 {
		t.Errorf("%d bytes still held after the requests", n)
	}
}

// TestWrongTokenAllocatesOnlyTheRequest: refusing a wrong token costs one
// buffer of the request's size and little else: the body is neither
// decoded nor copied.
func TestWrongTokenAllocatesOnlyTheRequest(t *testing.T) {
	f := newFixture(t)
	b := buildRequest(t, padded(strings.Repeat("a \"b\"\n", 1<<20)), withHeader("X-Gitlab-Token", "wrong"))
	serve := func() {
		w := httptest.NewRecorder()
		f.srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/gitlab", bytes.NewReader(b)))
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "X-Gitlab-Token") {
			t.Fatalf("wrong token: %d %s", w.Code, w.Body)
		}
	}
	serve()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	serve()
	runtime.ReadMemStats(&after)
	got, bound := after.TotalAlloc-before.TotalAlloc, uint64(len(b))+256<<10
	t.Logf("refusing a %d-byte request allocated %d bytes", len(b), got)
	if got > bound {
		t.Errorf("refusing a %d-byte request allocated %d bytes; want at most %d (the request and 256 KiB)", len(b), got, bound)
	}
}
