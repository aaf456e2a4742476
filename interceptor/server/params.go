package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ciel-ci/ciel/interceptor/engine"
)

// Params are the ciel interceptor's params, as a Trigger gives them in
// interceptors[].params.
type Params struct {
	// SecretRef names the Secret (in the trigger's namespace) holding the
	// webhook's secret token, compared with X-Gitlab-Token.
	SecretRef *SecretRef `json:"secretRef,omitempty"`
	// SigningSecretRef names the Secret holding GitLab's signing token
	// (whsec_...): the webhook-signature header is then verified.
	SigningSecretRef *SecretRef `json:"signingSecretRef,omitempty"`
	// EventTypes are the X-Gitlab-Event values accepted; empty: all.
	EventTypes []string `json:"eventTypes,omitempty"`
	// Filter and Overlays are CEL, as in Triggers' CEL interceptor.
	Filter   string           `json:"filter,omitempty"`
	Overlays []engine.Overlay `json:"overlays,omitempty"`
	// Typed type-checks Filter and Overlays against GitLab's push shapes.
	Typed bool `json:"typed,omitempty"`
	// Policy names a policy of the interceptor's policy directory, instead
	// of Filter and Overlays.
	Policy string `json:"policy,omitempty"`
	// ChangedFiles is where extensions.changed_files come from: payload
	// (default; completed from the GitLab API when truncated and an API
	// is configured), api (always from the API), or off.
	ChangedFiles string `json:"changedFiles,omitempty"`
	// FailOpen decides on the payload's (incomplete) changed files when
	// the GitLab API fails, instead of refusing with Unavailable.
	FailOpen bool `json:"failOpen,omitempty"`
	// Dedup drops repeated deliveries (default true).
	Dedup *bool `json:"dedup,omitempty"`
	// AllowForks builds merge requests whose source project is a fork
	// (default false: refused with FailedPrecondition, docs/security.md).
	AllowForks bool `json:"allowForks,omitempty"`
	// Insecure accepts a Trigger with neither SecretRef nor
	// SigningSecretRef, for a test setup. Without it such a Trigger is
	// refused: anyone reaching the EventListener could start builds.
	Insecure bool `json:"insecure,omitempty"`
	// AllowedHosts are the GitLab hosts (host, host:port or host/path)
	// the payload's clone and web URLs may point to; default: the
	// interceptor's --allowed-git-hosts (the host of --gitlab-url).
	AllowedHosts []string `json:"allowedHosts,omitempty"`
	// AllowedProjects are path patterns (pathglob: "team-a/**",
	// "!team-a/sandbox") of the project paths (path_with_namespace) this
	// Trigger accepts; empty: any.
	AllowedProjects []string `json:"allowedProjects,omitempty"`
	// VerifyCommit asks GitLab whether the pushed commit exists in the
	// payload's project before continuing (one call, cached).
	VerifyCommit bool `json:"verifyCommit,omitempty"`
	// MaxListedPaths bounds each list of the response's
	// extensions.changed_files (all, added, modified, removed); counts
	// and listed_truncated say what was cut. Default
	// DefaultMaxListedPaths; -1 lists every path; 0 lists none (counts
	// only). CEL always sees every path.
	MaxListedPaths *int `json:"maxListedPaths,omitempty"`
}

// DefaultMaxListedPaths is how many paths each changed_files list of the
// response carries unless the param maxListedPaths says otherwise.
const DefaultMaxListedPaths = 1000

// SecretRef names a key of a Secret.
type SecretRef struct {
	SecretName string `json:"secretName"`
	SecretKey  string `json:"secretKey"`
}

// Changed files modes.
const (
	ChangedFilesPayload = "payload"
	ChangedFilesModeAPI = "api"
	ChangedFilesOff     = "off"
)

var paramShapes = map[string]string{
	"secretRef":        `an object {"secretName": "...", "secretKey": "..."}`,
	"signingSecretRef": `an object {"secretName": "...", "secretKey": "..."}`,
	"eventTypes":       `a list of strings, e.g. ["Push Hook", "Tag Push Hook"]`,
	"filter":           "a string (a CEL expression)",
	"overlays":         `a list of {"key": "...", "expression": "..."}`,
	"typed":            "a boolean",
	"policy":           "a string (a policy name)",
	"changedFiles":     `one of "payload", "api", "off"`,
	"failOpen":         "a boolean",
	"dedup":            "a boolean",
	"allowForks":       "a boolean",
	"insecure":         "a boolean",
	"allowedHosts":     `a list of strings, e.g. ["gitlab.example.com"]`,
	"allowedProjects":  `a list of project path patterns, e.g. ["team-a/**"]`,
	"verifyCommit":     "a boolean",
	"maxListedPaths":   "an integer: -1 (every path), 0 (none) or a positive bound",
}

// ParseParams reads the interceptor params, naming the param and the
// expected shape on any error.
func ParseParams(raw map[string]any) (Params, error) {
	var p Params
	b, err := json.Marshal(raw)
	if err != nil {
		return p, fmt.Errorf("reading the interceptor params: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field, _, _ := strings.Cut(te.Field, ".")
			if shape, ok := paramShapes[field]; ok {
				return p, fmt.Errorf("param %s: want %s, got a JSON %s", field, shape, te.Value)
			}
			return p, fmt.Errorf("param %s: wrong type: got a JSON %s", te.Field, te.Value)
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return p, fmt.Errorf("unknown param %s: known params are secretRef, signingSecretRef, insecure, eventTypes, filter, overlays, typed, policy, changedFiles, failOpen, dedup, allowedHosts, allowedProjects, verifyCommit, allowForks, maxListedPaths", name)
		}
		return p, fmt.Errorf("reading the interceptor params: %w", err)
	}
	for _, r := range []struct {
		name string
		ref  *SecretRef
	}{{"secretRef", p.SecretRef}, {"signingSecretRef", p.SigningSecretRef}} {
		if r.ref != nil && (r.ref.SecretName == "" || r.ref.SecretKey == "") {
			return p, fmt.Errorf("param %s: want %s with both set", r.name, paramShapes[r.name])
		}
	}
	switch p.ChangedFiles {
	case "":
		p.ChangedFiles = ChangedFilesPayload
	case ChangedFilesPayload, ChangedFilesModeAPI, ChangedFilesOff:
	default:
		return p, fmt.Errorf("param changedFiles: want %s, got %q", paramShapes["changedFiles"], p.ChangedFiles)
	}
	if p.Insecure && (p.SecretRef != nil || p.SigningSecretRef != nil) {
		return p, errors.New("param insecure: true with a secretRef or signingSecretRef: remove insecure")
	}
	if p.MaxListedPaths != nil && *p.MaxListedPaths < -1 {
		return p, fmt.Errorf("param maxListedPaths: want %s, got %d", paramShapes["maxListedPaths"], *p.MaxListedPaths)
	}
	if p.Policy != "" && (p.Filter != "" || len(p.Overlays) > 0) {
		return p, errors.New("params policy and filter/overlays: give a policy or inline CEL, not both")
	}
	return p, nil
}

func (p Params) dedup() bool { return p.Dedup == nil || *p.Dedup }

// maxListed is the bound on each changed_files list of the response; -1:
// none.
func (p Params) maxListed() int {
	if p.MaxListedPaths == nil {
		return DefaultMaxListedPaths
	}
	return *p.MaxListedPaths
}
