package gitlab

import (
	"math"
	"strings"

	"github.com/ciel-ci/ciel/internal/semver"
)

// Facts is what ciel derives from a push or tag push: extensions.push, with
// the keys and meanings documented in docs/extensions.md.
type Facts struct {
	Event             string `json:"event"`
	Ref               string `json:"ref"`
	Branch            string `json:"branch"`
	Tag               string `json:"tag"`
	IsBranch          bool   `json:"is_branch"`
	IsTag             bool   `json:"is_tag"`
	IsNewRef          bool   `json:"is_new_ref"`
	IsBranchDelete    bool   `json:"is_branch_delete"`
	IsTagDelete       bool   `json:"is_tag_delete"`
	IsDelete          bool   `json:"is_delete"`
	Before            string `json:"before"`
	After             string `json:"after"`
	CheckoutSHA       string `json:"checkout_sha"`
	SHA               string `json:"sha"`
	ShortSHA          string `json:"short_sha"`
	RefSlug           string `json:"ref_slug"`
	DefaultBranch     string `json:"default_branch"`
	IsDefaultBranch   bool   `json:"is_default_branch"`
	ProjectID         int64  `json:"project_id"`
	ProjectPath       string `json:"project_path"`
	ProjectURL        string `json:"project_url"`
	GitHTTPURL        string `json:"git_http_url"`
	GitSSHURL         string `json:"git_ssh_url"`
	UserUsername      string `json:"user_username"`
	TotalCommitsCount int64  `json:"total_commits_count"`
	CISkip            bool   `json:"ci_skip"`
	Semver            Semver `json:"semver"`
}

// Semver is the strict SemVer 2.0 reading of a tag name (internal/semver).
type Semver struct {
	Valid        bool   `json:"valid"`
	Version      string `json:"version"` // canonical, without the "v": 1.2.3-rc.1+build.5
	Major        int64  `json:"major"`
	Minor        int64  `json:"minor"`
	Patch        int64  `json:"patch"`
	Prerelease   string `json:"prerelease"`
	Build        string `json:"build"`
	IsPrerelease bool   `json:"is_prerelease"`
	Error        string `json:"error"` // why it is not a version; "" when Valid
}

// ShortSHALength is the length of Facts.ShortSHA, as GitLab's
// CI_COMMIT_SHORT_SHA.
const ShortSHALength = 8

// refSlugMax is the longest CI_COMMIT_REF_SLUG GitLab produces.
const refSlugMax = 63

// Facts derives extensions.push from the event.
func (e *PushEvent) Facts() Facts {
	f := Facts{
		Event:             e.ObjectKind,
		Ref:               e.Ref,
		Before:            e.Before,
		After:             e.After,
		CheckoutSHA:       e.CheckoutSHA,
		DefaultBranch:     e.Project.DefaultBranch,
		ProjectID:         e.ProjectID,
		ProjectPath:       e.Project.PathWithNamespace,
		ProjectURL:        e.Project.WebURL,
		GitHTTPURL:        firstNonEmpty(e.Project.GitHTTPURL, e.Repository.GitHTTPURL),
		GitSSHURL:         firstNonEmpty(e.Project.GitSSHURL, e.Repository.GitSSHURL),
		UserUsername:      e.UserUsername,
		TotalCommitsCount: e.TotalCommitsCount,
	}
	if f.ProjectID == 0 {
		f.ProjectID = e.Project.ID
	}
	var name string
	switch {
	case strings.HasPrefix(e.Ref, branchPrefix):
		f.IsBranch = true
		f.Branch = e.Ref[len(branchPrefix):]
		name = f.Branch
	case strings.HasPrefix(e.Ref, tagPrefix):
		f.IsTag = true
		f.Tag = e.Ref[len(tagPrefix):]
		name = f.Tag
	}
	f.IsNewRef = isZeroSHA(e.Before)
	f.IsDelete = isZeroSHA(e.After)
	f.IsBranchDelete = f.IsDelete && f.IsBranch
	f.IsTagDelete = f.IsDelete && f.IsTag
	if !f.IsDelete {
		f.SHA = firstNonEmpty(e.CheckoutSHA, e.After)
		f.ShortSHA = f.SHA[:min(len(f.SHA), ShortSHALength)]
	}
	f.RefSlug = RefSlug(name)
	f.IsDefaultBranch = f.IsBranch && f.Branch != "" && f.Branch == f.DefaultBranch
	f.CISkip = e.skipsCI(f.SHA)
	if f.IsTag {
		f.Semver = semverFacts(f.Tag)
	} else {
		f.Semver = Semver{Error: "not a tag"}
	}
	return f
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// isZeroSHA reports whether s is GitLab's blank revision: 40 zeros (SHA-1
// repositories) or 64 (SHA-256); any run of zeros is accepted.
func isZeroSHA(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// RefSlug turns a branch or tag name into GitLab's CI_COMMIT_REF_SLUG:
// lowercased, every character other than a-z and 0-9 replaced by "-", cut to
// 63 characters, then leading and trailing "-" removed. Runs of "-" are kept,
// as GitLab keeps them ("feature//x" → "feature--x"). Like Ruby's downcase,
// which GitLab uses, the Kelvin sign lowercases to "k" and "İ" to "i" plus a
// combining dot (so "i-"); every other non-ASCII character becomes one "-".
func RefSlug(name string) string {
	b := make([]byte, 0, min(len(name), refSlugMax))
	for _, r := range name {
		if len(b) >= refSlugMax {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b = append(b, byte(r))
		case r >= 'A' && r <= 'Z':
			b = append(b, byte(r)+('a'-'A'))
		case r == '\u212A': // KELVIN SIGN
			b = append(b, 'k')
		case r == '\u0130': // LATIN CAPITAL LETTER I WITH DOT ABOVE → "i\u0307"
			b = append(b, 'i')
			if len(b) < refSlugMax {
				b = append(b, '-')
			}
		default:
			b = append(b, '-')
		}
	}
	return strings.Trim(string(b), "-")
}

// skipsCI reports whether GitLab itself would skip the pipeline: the push
// option ci.skip, or "[ci skip]"/"[skip ci]" (any case, " ", "_" or "-"
// between the words) in the message of the commit being built.
func (e *PushEvent) skipsCI(sha string) bool {
	if ci, ok := e.PushOptions["ci"].(map[string]any); ok && present(ci["skip"]) {
		return true
	}
	if sha == "" {
		return false
	}
	for i := len(e.Commits) - 1; i >= 0; i-- {
		if e.Commits[i].ID == sha {
			return hasSkipMarker(e.Commits[i].Message)
		}
	}
	return false
}

// present is Rails' Object#present?, which GitLab applies to push options.
func present(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case string:
		return strings.TrimSpace(v) != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	default:
		return true
	}
}

// hasSkipMarker matches GitLab's /\[(ci[ _-]skip|skip[ _-]ci)\]/i.
func hasSkipMarker(msg string) bool {
	for i := strings.IndexByte(msg, '['); i >= 0 && i+9 <= len(msg); {
		w := msg[i+1 : i+9] // "ci_skip]" or "skip-ci]", 8 bytes
		if (hasFoldPrefix(w, "ci") && isSkipSep(w[2]) && hasFoldPrefix(w[3:], "skip]")) ||
			(hasFoldPrefix(w, "skip") && isSkipSep(w[4]) && hasFoldPrefix(w[5:], "ci]")) {
			return true
		}
		j := strings.IndexByte(msg[i+1:], '[')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

func isSkipSep(c byte) bool { return c == ' ' || c == '_' || c == '-' }

func hasFoldPrefix(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// semverFacts reads a tag name as a strict SemVer 2.0 version.
func semverFacts(tag string) Semver {
	v, err := semver.Parse(tag)
	if err != nil {
		return Semver{Error: err.Error()}
	}
	if v.Major > math.MaxInt64 || v.Minor > math.MaxInt64 || v.Patch > math.MaxInt64 {
		return Semver{Error: "version component above 9223372036854775807, CEL's largest int"}
	}
	return Semver{
		Valid:        true,
		Version:      v.String(),
		Major:        int64(v.Major),
		Minor:        int64(v.Minor),
		Patch:        int64(v.Patch),
		Prerelease:   v.Prerelease,
		Build:        v.Build,
		IsPrerelease: v.IsPrerelease(),
	}
}

// Map returns f as CEL and Tekton Triggers see it: string, bool and int64
// values (CEL string, bool, int) under the keys of docs/extensions.md, with
// semver as a nested map.
func (f Facts) Map() map[string]any {
	var b strBlock // one allocation for the strings
	return map[string]any{
		"event":               b.box(f.Event, factsStrings),
		"ref":                 b.box(f.Ref, factsStrings),
		"branch":              b.box(f.Branch, factsStrings),
		"tag":                 b.box(f.Tag, factsStrings),
		"is_branch":           f.IsBranch,
		"is_tag":              f.IsTag,
		"is_new_ref":          f.IsNewRef,
		"is_branch_delete":    f.IsBranchDelete,
		"is_tag_delete":       f.IsTagDelete,
		"is_delete":           f.IsDelete,
		"before":              b.box(f.Before, factsStrings),
		"after":               b.box(f.After, factsStrings),
		"checkout_sha":        b.box(f.CheckoutSHA, factsStrings),
		"sha":                 b.box(f.SHA, factsStrings),
		"short_sha":           b.box(f.ShortSHA, factsStrings),
		"ref_slug":            b.box(f.RefSlug, factsStrings),
		"default_branch":      b.box(f.DefaultBranch, factsStrings),
		"is_default_branch":   f.IsDefaultBranch,
		"project_id":          f.ProjectID,
		"project_path":        b.box(f.ProjectPath, factsStrings),
		"project_url":         b.box(f.ProjectURL, factsStrings),
		"git_http_url":        b.box(f.GitHTTPURL, factsStrings),
		"git_ssh_url":         b.box(f.GitSSHURL, factsStrings),
		"user_username":       b.box(f.UserUsername, factsStrings),
		"total_commits_count": f.TotalCommitsCount,
		"ci_skip":             f.CISkip,
		"semver":              f.Semver.mapWith(&b),
	}
}

// Map returns s as a map with the json tag names as keys.
func (s Semver) Map() map[string]any {
	var b strBlock
	return s.mapWith(&b)
}

// factsStrings is how many strings Facts.Map boxes: its own and Semver's.
const factsStrings = 16 + 4

func (s Semver) mapWith(b *strBlock) map[string]any {
	return map[string]any{
		"valid":         s.Valid,
		"version":       b.box(s.Version, 4),
		"major":         s.Major,
		"minor":         s.Minor,
		"patch":         s.Patch,
		"prerelease":    b.box(s.Prerelease, 4),
		"build":         b.box(s.Build, 4),
		"is_prerelease": s.IsPrerelease,
		"error":         b.box(s.Error, 4),
	}
}
