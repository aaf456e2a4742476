package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// Merge request events.
//
// extensions.merge_request comes from the payload. extensions.changed_files
// of a merge request needs the GitLab API (the payload lists no files), so
// it is fetched only when the decision depends on it:
//
//  1. the rules are evaluated with changed_files unfetched: reading any of
//     its keys yields an error value and records which part was read (the
//     MR's diff, or the update's);
//  2. if the evaluation failed and something was read, that is fetched,
//     outside of any CEL evaluation and its deadline, and the rules are
//     evaluated again from scratch. An evaluation that succeeded did not
//     depend on what it read: CEL absorbed the error values.
//
// CEL's logical operators are commutative and absorb errors when the other
// side decides (`false && x` and `x && false` are false), so a rule such as
// `has_new_commits && changed_files.all.matchesAny(...)` costs no request on
// a label edit. When the trigger fires on an event that brings code (open,
// reopen, an update with commits), the MR's files are fetched for the
// Trigger's bindings even if no expression read them. Otherwise (a label,
// title or assignee edit nobody's rule looked at) extensions.changed_files
// is returned unfetched: empty lists, truncated, source "none".

// maxMergeRequestPasses bounds the evaluations of one MR event: the first,
// one after fetching the MR's files, one after fetching the update's, one
// after fetching for the bindings.
const maxMergeRequestPasses = 4

// mrFiles is one merge request event's changed files as fetched so far.
type mrFiles struct {
	ev    *gitlab.MergeRequestEvent
	facts gitlab.MergeRequestFacts
	src   gitlab.MergeRequestFilesSource

	files, update         *gitlab.ChangedFiles
	wantFiles, wantUpdate bool
	// The fetched lists as CEL values, built once across passes.
	filesVal  traits.Mapper
	updateVal ref.Val
}

func newMRFiles(ev *gitlab.MergeRequestEvent, src gitlab.ChangedFilesSource) *mrFiles {
	st := &mrFiles{ev: ev, facts: ev.Facts()}
	if s, ok := src.(gitlab.MergeRequestFilesSource); ok {
		st.src = s
	} else {
		// No source for merge requests (the payload only): unknown.
		unknown := gitlab.UnknownChangedFiles()
		st.files = &unknown
	}
	if ev.ObjectAttributes.OldRev == "" {
		none := gitlab.NoChangedFiles()
		st.update = &none
	} else if st.src == nil {
		unknown := gitlab.UnknownChangedFiles()
		st.update = &unknown
	}
	return st
}

// wanting reports whether an evaluation read something not fetched yet.
func (st *mrFiles) wanting() bool {
	return (st.wantFiles && st.files == nil) || (st.wantUpdate && st.update == nil)
}

// fetch gets what was read.
func (st *mrFiles) fetch(ctx context.Context) error {
	if st.wantFiles && st.files == nil {
		cf, err := st.src.MergeRequestFiles(ctx, st.ev)
		if err != nil {
			return err
		}
		st.files = &cf
	}
	if st.wantUpdate && st.update == nil {
		cf, err := st.src.MergeRequestUpdateFiles(ctx, st.ev)
		if err != nil {
			return err
		}
		st.update = &cf
	}
	return nil
}

// evaluateMergeRequest evaluates p on a merge request event, fetching its
// changed files only when the decision needs them.
func (e *Engine) evaluateMergeRequest(ctx context.Context, p *Program, in Input, ev *gitlab.Event) (*Decision, error) {
	st := newMRFiles(ev.MergeRequest, in.ChangedFiles)
	in.Event, in.mr = ev, st
	for pass := 0; pass < maxMergeRequestPasses; pass++ {
		d, err := e.Evaluate(ctx, p, in)
		if err == nil {
			// The outcome did not depend on what was read unfetched (CEL
			// absorbed the error values): nothing to fetch, but the
			// bindings of a firing event that brings code.
			st.wantFiles = d.Continue && st.files == nil && st.facts.BringsCode()
			st.wantUpdate = false
		}
		if !st.wanting() {
			return d, err
		}
		if err := st.fetch(ctx); err != nil {
			return nil, &Error{Kind: KindChangedFiles, Where: "changed files",
				Err: fmt.Errorf("merge request !%d: %w", st.facts.IID, err)}
		}
	}
	return nil, &Error{Kind: KindInternal, Err: errors.New("evaluating a merge request event: changed files still missing after fetching them")}
}

// extensions puts merge_request and changed_files into exts and d, and
// returns them as the extensions the interceptor returns (changed_files
// unfetched when nothing needed it).
func (st *mrFiles) extensions(exts map[string]any, d *Decision) map[string]any {
	mr := st.facts.Map()
	d.MergeRequest = mr
	exts["merge_request"] = mr
	exts["changed_files"] = &lazyFiles{st: st}
	d.ChangedFiles = st.files
	return map[string]any{"merge_request": mr, "changed_files": st.materialized()}
}

// materialized is changed_files as fetched so far, with update; unfetched
// parts are gitlab.UnknownChangedFiles.
func (st *mrFiles) materialized() map[string]any {
	files, update := gitlab.UnknownChangedFiles(), gitlab.UnknownChangedFiles()
	if st.files != nil {
		files = *st.files
	}
	if st.update != nil {
		update = *st.update
	}
	m := files.Map()
	m["update"] = update.Map()
	return m
}

// lazyFiles is extensions.changed_files of a merge request as CEL sees it:
// a map whose keys are known up front and whose values are fetched on
// demand (see the notes at the top of this file).
type lazyFiles struct {
	st *mrFiles
}

var _ traits.Mapper = (*lazyFiles)(nil)

// lazyKeys are the keys of changed_files on a merge request event.
var lazyKeys = func() map[string]bool {
	m := map[string]bool{"update": true}
	for k := range (gitlab.ChangedFiles{}).Map() {
		m[k] = true
	}
	return m
}()

func (l *lazyFiles) pending() ref.Val {
	return types.NewErr("extensions.changed_files of merge request !%d: not fetched yet", l.st.facts.IID)
}

// full returns the whole map when fetched, marking what is missing.
func (l *lazyFiles) full() (traits.Mapper, ref.Val) {
	st := l.st
	if st.files == nil {
		st.wantFiles = true
	}
	if st.update == nil {
		st.wantUpdate = true
	}
	if st.wanting() {
		return nil, l.pending()
	}
	return types.DefaultTypeAdapter.NativeToValue(st.materialized()).(traits.Mapper), nil
}

func (l *lazyFiles) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	if !lazyKeys[string(k)] {
		return nil, false
	}
	st := l.st
	if k == "update" {
		if st.update == nil {
			st.wantUpdate = true
			return l.pending(), false
		}
		if st.updateVal == nil {
			st.updateVal = types.DefaultTypeAdapter.NativeToValue(st.update.Map())
		}
		return st.updateVal, true
	}
	if st.files == nil {
		st.wantFiles = true
		return l.pending(), false
	}
	if st.filesVal == nil {
		st.filesVal = types.DefaultTypeAdapter.NativeToValue(st.files.Map()).(traits.Mapper)
	}
	return st.filesVal.Find(key)
}

func (l *lazyFiles) Get(key ref.Val) ref.Val {
	v, ok := l.Find(key)
	if !ok && v == nil {
		return types.NewErr("no such key: %v", key)
	}
	return v
}

func (l *lazyFiles) Contains(key ref.Val) ref.Val {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key)
	}
	return types.Bool(lazyKeys[string(k)])
}

func (l *lazyFiles) Size() ref.Val { return types.Int(len(lazyKeys)) }

func (l *lazyFiles) Iterator() traits.Iterator {
	keys := make([]string, 0, len(lazyKeys))
	for k := range lazyKeys {
		keys = append(keys, k)
	}
	return types.NewStringList(types.DefaultTypeAdapter, keys).(traits.Lister).Iterator()
}

func (l *lazyFiles) ConvertToNative(t reflect.Type) (any, error) {
	m, errVal := l.full()
	if errVal != nil {
		return nil, errVal.(*types.Err)
	}
	return m.ConvertToNative(t)
}

func (l *lazyFiles) ConvertToType(t ref.Type) ref.Val {
	if t == types.MapType {
		return l
	}
	if t == types.TypeType {
		return types.MapType
	}
	return types.NewErr("type conversion error from map to %s", t.TypeName())
}

func (l *lazyFiles) Equal(other ref.Val) ref.Val {
	m, errVal := l.full()
	if errVal != nil {
		return errVal
	}
	return m.Equal(other)
}

func (l *lazyFiles) Type() ref.Type { return types.MapType }

func (l *lazyFiles) Value() any { return l.st.materialized() }
