// Package gitlab decodes GitLab webhooks for ciel's decision engine: one
// bounded pass over the request body gives both the untyped body CEL sees
// (identical to what Tekton Triggers' CEL interceptor sees) and, for push and
// tag push events, a typed PushEvent, for merge request events a typed
// MergeRequestEvent, whose fields have been checked against GitLab's
// documented types.
//
// From a PushEvent the package derives what the engine exposes as
// extensions.push (Facts) and extensions.changed_files (ChangedFiles, from
// the payload by PayloadChangedFiles, or from any ChangedFilesSource); from
// a MergeRequestEvent, extensions.merge_request (MergeRequestFacts), its
// changed files coming from a MergeRequestFilesSource (the GitLab API). The
// exact shape of each is documented in docs/extensions.md.
//
// Typical use, once per webhook:
//
//	ev, err := gitlab.Decode(r.Header.Get("X-Gitlab-Event"), body)
//	if err != nil {
//		// a bad request: errors.Is(err, gitlab.ErrTooLarge) for 413
//	}
//	if ev.Push != nil {
//		facts := ev.Push.Facts()
//		files := gitlab.PayloadChangedFiles(ev.Push)
//		// ... facts.Map() and files.Map() become CEL's extensions
//	}
//
// Decoding never panics on untrusted input; every error names what is wrong
// (a byte offset with line and column, or a JSON path such as
// commits[3].added[0]).
package gitlab
