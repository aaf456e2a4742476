// Package policy reads ciel's policies: named CEL rules (a filter and
// overlays) in YAML files, with the test cases that prove them.
//
// The interceptor evaluates a policy named by a Trigger's `policy` param;
// `cel-eval --policy FILE` and `cel-eval test DIR` run the same policy with
// the same engine offline. A file holds one policy:
//
//	name: build-on-change
//	description: Build branch pushes that change more than docs.
//	eventTypes: ["Push Hook"]
//	typed: true
//	filter: '!extensions.push.is_delete && ...'
//	overlays:
//	  - key: image_tag
//	    expression: extensions.push.short_sha
//	tests:
//	  - name: a source push builds
//	    request: testdata/push-src.http      # or payload: FILE.json + event: Push Hook, or body: {...}
//	    changedFiles: [src/main.go]          # optional: override the changed files
//	    expect:
//	      continue: true
//	      overlays: {image_tag: 1a2b3c4d}
//
// Decoding is strict: an unknown field is an error, so a misspelt
// `overlay:` cannot silently disable a rule.
//
// A case's request and payload files are relative to the policy file; the
// shipped policies name the GitLab fixtures of interceptor/gitlab/testdata
// (`payload: ../interceptor/gitlab/testdata/push.json`). ReadWebhook reads
// such files for cel-eval's -r and --body as for the cases. Store serves
// the policy set of a directory to the interceptor and reloads it when the
// directory changes.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/ciel-ci/ciel/interceptor/engine"
)

// MaxFileBytes bounds a policy file.
const MaxFileBytes = 1 << 20

// Policy is one policy file, compiled.
type Policy struct {
	Name        string           `json:"name"`
	Description string           `json:"description,omitempty"`
	EventTypes  []string         `json:"eventTypes,omitempty"`
	Typed       bool             `json:"typed,omitempty"`
	Filter      string           `json:"filter,omitempty"`
	Overlays    []engine.Overlay `json:"overlays,omitempty"`
	// AllowForks builds merge requests from forks. Default false: such a
	// merge request is refused before any rule runs (ForkRefusal).
	AllowForks bool   `json:"allowForks,omitempty"`
	Tests      []Case `json:"tests,omitempty"`

	// File is where the policy was read from.
	File string `json:"-"`
	// Program is the compiled filter and overlays.
	Program *engine.Program `json:"-"`
}

// Case is one test case of a policy.
type Case struct {
	Name string `json:"name"`
	// Request is a raw HTTP request file (request line, headers, blank
	// line, JSON body), relative to the policy file.
	Request string `json:"request,omitempty"`
	// Payload is a JSON body file, relative to the policy file.
	Payload string `json:"payload,omitempty"`
	// Body is an inline JSON body.
	Body json.RawMessage `json:"body,omitempty"`
	// Event is the X-Gitlab-Event header (a shortcut for Headers).
	Event   string            `json:"event,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// ChangedFiles, when set, replaces the changed files of a push
	// (source "override"), as cel-eval --files does.
	ChangedFiles *[]string `json:"changedFiles,omitempty"`
	Expect       Expect    `json:"expect"`
}

// Expect is what a case must give.
type Expect struct {
	// Continue is the expected decision. Required unless Error is set.
	Continue *bool `json:"continue,omitempty"`
	// Overlays are expected overlay values by key (others are not checked).
	Overlays map[string]any `json:"overlays,omitempty"`
	// Error, when set, is a substring of the expected error.
	Error string `json:"error,omitempty"`
	// Reason, when set, is a substring of the reason of a false decision.
	Reason string `json:"reason,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Parse reads and compiles one policy from data; file names it in errors
// and anchors the test cases' relative paths.
func Parse(eng *engine.Engine, file string, data []byte) (*Policy, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s: %d bytes, over the limit of %d", file, len(data), MaxFileBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: empty policy file", file)
	}
	var p Policy
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	p.File = file
	var problems []string
	if !nameRE.MatchString(p.Name) {
		problems = append(problems, fmt.Sprintf("name %q must be a DNS label (lowercase letters, digits and '-', at most 63)", p.Name))
	}
	if strings.TrimSpace(p.Filter) == "" && len(p.Overlays) == 0 {
		problems = append(problems, "neither a filter nor overlays: the policy would accept everything and add nothing")
	}
	for i, c := range p.Tests {
		if c.Name == "" {
			problems = append(problems, fmt.Sprintf("tests[%d]: no name", i))
		}
		n := 0
		for _, set := range []bool{c.Request != "", c.Payload != "", len(c.Body) > 0} {
			if set {
				n++
			}
		}
		if n != 1 {
			problems = append(problems, fmt.Sprintf("tests[%d] %q: give exactly one of request, payload, body", i, c.Name))
		}
		if c.Expect.Continue == nil && c.Expect.Error == "" {
			problems = append(problems, fmt.Sprintf("tests[%d] %q: expect.continue or expect.error is required", i, c.Name))
		}
	}
	prog, err := eng.Compile(engine.Rules{Filter: p.Filter, Overlays: p.Overlays, Typed: p.Typed})
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", file, strings.Join(problems, "; "))
	}
	p.Program = prog
	return &p, nil
}

// Load reads and compiles the policy in file.
func Load(eng *engine.Engine, file string) (*Policy, error) {
	data, err := readBounded(file)
	if err != nil {
		return nil, err
	}
	return Parse(eng, file, data)
}

func readBounded(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading a policy: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading a policy: %w", err)
	}
	if st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%s: %d bytes, over the limit of %d", file, st.Size(), MaxFileBytes)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading a policy: %w", err)
	}
	return data, nil
}

// AllowsEvent reports whether the policy accepts the X-Gitlab-Event value
// (every event when EventTypes is empty).
func (p *Policy) AllowsEvent(eventType string) bool {
	return len(p.EventTypes) == 0 || slices.Contains(p.EventTypes, eventType)
}

// Set is the policies of a directory, by name. It is immutable: a reload
// builds a new Set and swaps it in whole.
type Set struct {
	byName map[string]*Policy
	names  []string
}

// Get returns the policy called name.
func (s *Set) Get(name string) (*Policy, bool) {
	if s == nil {
		return nil, false
	}
	p, ok := s.byName[name]
	return p, ok
}

// Names lists the policies, sorted.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s.names)
}

// Policies lists the policies sorted by name.
func (s *Set) Policies() []*Policy {
	out := make([]*Policy, 0, len(s.names))
	for _, n := range s.names {
		out = append(out, s.byName[n])
	}
	return out
}

// IsPolicyFile reports whether a directory entry's name is a policy file:
// *.yaml or *.yml, not hidden (a ConfigMap volume's ..data and its
// timestamped directory are), and not kustomize's own kustomization.yaml.
// LoadDir reads these files and Store hashes them to see a change.
func IsPolicyFile(name string) bool {
	if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
		return false
	}
	switch name {
	case "kustomization.yaml", "kustomization.yml":
		return false
	}
	return true
}

// LoadDir reads every *.yaml and *.yml file directly in dir (hidden files
// and directories, such as a ConfigMap volume's ..data, are skipped; the
// ConfigMap's symlinks to them are followed; kustomization.yaml is not a
// policy) and compiles them all. Any
// error rejects the whole set, listing every problem, so that a service
// keeps serving its previous set.
func LoadDir(eng *engine.Engine, dir string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading policies: %w", err)
	}
	s := &Set{byName: map[string]*Policy{}}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !IsPolicyFile(name) {
			continue
		}
		file := filepath.Join(dir, name)
		if st, err := os.Stat(file); err != nil || st.IsDir() {
			continue
		}
		p, err := Load(eng, file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := s.byName[p.Name]; ok {
			errs = append(errs, fmt.Errorf("%s: policy %q is also defined in %s", file, p.Name, prev.File))
			continue
		}
		s.byName[p.Name] = p
		s.names = append(s.names, p.Name)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("loading policies from %s: %w", dir, errors.Join(errs...))
	}
	if len(s.names) == 0 {
		return nil, fmt.Errorf("loading policies from %s: no *.yaml policy files", dir)
	}
	sort.Strings(s.names)
	return s, nil
}
