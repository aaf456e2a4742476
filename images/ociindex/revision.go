package ociindex

import (
	"errors"
	"fmt"
	"regexp"
)

// AnnotationRevision is the OCI annotation naming the source revision an
// index was built from; `ciel index create --revision` writes it, and the
// release refuses an index whose value is not the released commit.
const AnnotationRevision = "org.opencontainers.image.revision"

// ErrRevision: an index does not say it was built from the expected commit.
var ErrRevision = errors.New("index was not built from the expected commit")

// fullSHA is a full Git commit ID: 40 hex characters (SHA-1) or 64
// (SHA-256 repositories), lowercase as Git and GitLab print them.
var fullSHA = regexp.MustCompile(`^(?:[0-9a-f]{40}|[0-9a-f]{64})$`)

// CheckCommit reports whether sha is a full, lowercase Git commit ID: an
// abbreviated one could match several commits, so a release never trusts it.
func CheckCommit(sha string) error {
	if !fullSHA.MatchString(sha) {
		return fmt.Errorf("commit %q is not a full commit SHA (40 or 64 lowercase hex characters)", truncate(sha, 80))
	}
	return nil
}

// CheckRevision returns nil when annotations (an index's own annotations)
// carry AnnotationRevision equal to sha, a full commit SHA; otherwise an
// error wrapping ErrRevision that says what the index carries. An index
// without the annotation is refused too: nothing says which commit it holds.
func CheckRevision(annotations map[string]string, sha string) error {
	if err := CheckCommit(sha); err != nil {
		return err
	}
	got, ok := annotations[AnnotationRevision]
	switch {
	case !ok:
		return fmt.Errorf("the index has no %s annotation, so nothing says it was built from %s (rebuild it with ciel index create --revision): %w",
			AnnotationRevision, sha, ErrRevision)
	case got != sha:
		return fmt.Errorf("the index's %s is %q, not the commit %s: %w", AnnotationRevision, truncate(got, 80), sha, ErrRevision)
	}
	return nil
}

// truncate bounds an untrusted string quoted in an error.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
