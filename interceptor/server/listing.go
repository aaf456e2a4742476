package server

// changedFilesLists are the lists of extensions.changed_files that the
// response bounds.
var changedFilesLists = [...]string{"all", "added", "modified", "removed"}

// listChangedFiles returns the response's extensions with each list of
// changed_files cut to max paths (max < 0: every path), and two keys that
// say what the lists held: counts (the exact length of each list, as an
// object {all, added, modified, removed}) and listed_truncated (some list
// was cut). The decision is already taken on every path; the EventListener
// need not decode a monorepo push's 100,000 paths back. ext is not
// modified: the lists are re-sliced, not copied.
func listChangedFiles(ext map[string]any, max int) map[string]any {
	cf, ok := ext["changed_files"].(map[string]any)
	if !ok {
		return ext
	}
	out := make(map[string]any, len(ext))
	for k, v := range ext {
		out[k] = v
	}
	listed := make(map[string]any, len(cf)+2)
	for k, v := range cf {
		listed[k] = v
	}
	counts := make(map[string]any, len(changedFilesLists))
	cut := false
	for _, k := range changedFilesLists {
		l, ok := cf[k].([]any)
		if !ok {
			continue
		}
		counts[k] = int64(len(l))
		if max >= 0 && len(l) > max {
			listed[k] = l[:max:max]
			cut = true
		}
	}
	listed["counts"] = counts
	listed["listed_truncated"] = cut
	out["changed_files"] = listed
	return out
}
