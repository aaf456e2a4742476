package gitlab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	zero40 = "0000000000000000000000000000000000000000"
	shaA   = "1111111111111111111111111111111111111111"
	shaB   = "2222222222222222222222222222222222222222"
)

func TestPayloadChangedFiles(t *testing.T) {
	branch := func(before, after string, total int64, commits ...Commit) *PushEvent {
		return &PushEvent{ObjectKind: "push", Ref: "refs/heads/main", Before: before, After: after,
			Commits: commits, TotalCommitsCount: total}
	}
	tag := func(before, after string, total int64, commits ...Commit) *PushEvent {
		e := branch(before, after, total, commits...)
		e.ObjectKind, e.Ref = "tag_push", "refs/tags/v1.0.0"
		return e
	}
	tests := []struct {
		name  string
		event *PushEvent
		want  ChangedFiles
	}{
		{
			name:  "one commit",
			event: branch(shaA, shaB, 1, Commit{Added: []string{"a"}, Modified: []string{"m"}, Removed: []string{"r"}}),
			want:  fromPayload(false, []string{"a", "m", "r"}, []string{"a"}, []string{"m"}, []string{"r"}),
		},
		{
			name: "duplicates across commits kept once, first-seen order",
			event: branch(shaA, shaB, 3,
				Commit{Modified: []string{"b", "a"}},
				Commit{Modified: []string{"a", "c"}},
				Commit{Modified: []string{"c", "b"}}),
			want: fromPayload(false, []string{"b", "a", "c"}, nil, []string{"b", "a", "c"}, nil),
		},
		{
			name:  "added then modified is added",
			event: branch(shaA, shaB, 2, Commit{Added: []string{"f"}}, Commit{Modified: []string{"f"}}),
			want:  fromPayload(false, []string{"f"}, []string{"f"}, nil, nil),
		},
		{
			name:  "modified then removed is removed",
			event: branch(shaA, shaB, 2, Commit{Modified: []string{"f"}}, Commit{Removed: []string{"f"}}),
			want:  fromPayload(false, []string{"f"}, nil, nil, []string{"f"}),
		},
		{
			name:  "added then removed is in no list",
			event: branch(shaA, shaB, 2, Commit{Added: []string{"tmp", "keep"}}, Commit{Removed: []string{"tmp"}}),
			want:  fromPayload(false, []string{"keep"}, []string{"keep"}, nil, nil),
		},
		{
			name:  "removed then added is modified",
			event: branch(shaA, shaB, 2, Commit{Removed: []string{"f"}}, Commit{Added: []string{"f"}}),
			want:  fromPayload(false, []string{"f"}, nil, []string{"f"}, nil),
		},
		{
			name: "added, removed, added again is added",
			event: branch(shaA, shaB, 3,
				Commit{Added: []string{"f"}}, Commit{Removed: []string{"f"}}, Commit{Added: []string{"f"}}),
			want: fromPayload(false, []string{"f"}, []string{"f"}, nil, nil),
		},
		{
			name:  "no changed-file lists at all",
			event: branch(shaA, shaB, 2, Commit{ID: "c1"}, Commit{ID: "c2"}),
			want:  fromPayload(false, nil, nil, nil, nil),
		},
		{
			name:  "20 of 25 commits listed",
			event: branch(shaA, shaB, 25, slices.Repeat([]Commit{{Modified: []string{"x"}}}, 20)...),
			want:  fromPayload(true, []string{"x"}, nil, []string{"x"}, nil),
		},
		{
			name:  "force push: no commits, before not zero",
			event: branch(shaA, shaB, 0),
			want:  fromPayload(true, nil, nil, nil, nil),
		},
		{
			name:  "new branch with commits",
			event: branch(zero40, shaB, 1, Commit{Added: []string{"n"}}),
			want:  fromPayload(true, []string{"n"}, []string{"n"}, nil, nil),
		},
		{
			name:  "new branch without commits",
			event: branch(zero40, shaB, 0),
			want:  fromPayload(true, nil, nil, nil, nil),
		},
		{
			name:  "branch delete",
			event: branch(shaA, zero40, 0),
			want:  ChangedFiles{Source: SourceNone},
		},
		{
			name:  "new tag",
			event: tag(zero40, shaB, 0),
			want:  fromPayload(false, nil, nil, nil, nil),
		},
		{
			name:  "tag delete",
			event: tag(shaA, zero40, 0),
			want:  ChangedFiles{Source: SourceNone},
		},
		{
			name:  "tag with more commits than listed",
			event: tag(zero40, shaB, 3, Commit{Modified: []string{"x"}}),
			want:  fromPayload(true, []string{"x"}, nil, []string{"x"}, nil),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PayloadChangedFiles(tt.event)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("PayloadChangedFiles (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(referenceChangedFiles(tt.event), got); diff != "" {
				t.Errorf("differs from the reference model (-model +got):\n%s", diff)
			}
		})
	}
}

// TestPayloadChangedFilesMapPath crosses the linear-search/map threshold
// with the same net changes on both sides of it.
func TestPayloadChangedFilesMapPath(t *testing.T) {
	for _, n := range []int{1, linearLimit - 1, linearLimit, linearLimit + 1, 4 * linearLimit} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			paths := make([]string, n)
			for i := range paths {
				paths[i] = fmt.Sprintf("p%03d", i)
			}
			e := &PushEvent{Ref: "refs/heads/x", Before: shaA, After: shaB, TotalCommitsCount: 3, Commits: []Commit{
				{Added: paths},
				{Modified: paths[:n/2]},
				{Removed: paths[n/2:]},
			}}
			got := PayloadChangedFiles(e)
			if diff := cmp.Diff(referenceChangedFiles(e), got); diff != "" {
				t.Errorf("(-model +got):\n%s", diff)
			}
			if len(got.All) != n/2 || len(got.Added) != n/2 {
				t.Errorf("All %d, Added %d; want %d each (the rest was added then removed)", len(got.All), len(got.Added), n/2)
			}
		})
	}
}

// referenceChangedFiles is the specification of docs/extensions.md written
// as plainly as possible (quadratic), for the tests and FuzzChangedFiles.
func referenceChangedFiles(e *PushEvent) ChangedFiles {
	isZero := func(s string) bool { return s != "" && s == fmt.Sprintf("%0*d", len(s), 0) }
	if isZero(e.After) {
		return ChangedFiles{Source: SourceNone}
	}
	type op struct {
		path string
		kind byte // 'A', 'M', 'R'
	}
	var ops []op
	for _, c := range e.Commits {
		for _, p := range c.Added {
			ops = append(ops, op{p, 'A'})
		}
		for _, p := range c.Modified {
			ops = append(ops, op{p, 'M'})
		}
		for _, p := range c.Removed {
			ops = append(ops, op{p, 'R'})
		}
	}
	var order []string
	for _, o := range ops {
		if !slices.Contains(order, o.path) {
			order = append(order, o.path)
		}
	}
	cf := fromPayload(false, nil, nil, nil, nil)
	for _, p := range order {
		var first, last byte
		for _, o := range ops {
			if o.path == p {
				if first == 0 {
					first = o.kind
				}
				last = o.kind
			}
		}
		before := first != 'A'
		after := last != 'R'
		switch {
		case !before && after:
			cf.Added = append(cf.Added, p)
		case before && after:
			cf.Modified = append(cf.Modified, p)
		case before && !after:
			cf.Removed = append(cf.Removed, p)
		default:
			continue
		}
		cf.All = append(cf.All, p)
	}
	isTag := len(e.Ref) >= len("refs/tags/") && e.Ref[:len("refs/tags/")] == "refs/tags/"
	cf.Truncated = e.TotalCommitsCount > int64(len(e.Commits)) ||
		(!isTag && (isZero(e.Before) || len(e.Commits) == 0))
	return cf
}

func TestChangedFilesMap(t *testing.T) {
	cf := ChangedFiles{All: []string{"a", "b"}, Added: []string{"a"}, Removed: []string{"b"}, Truncated: true, Source: SourceAPI}
	want := map[string]any{
		"all":       []any{"a", "b"},
		"added":     []any{"a"},
		"modified":  []any{},
		"removed":   []any{"b"},
		"count":     int64(2),
		"truncated": true,
		"source":    "api",
	}
	if diff := cmp.Diff(want, cf.Map()); diff != "" {
		t.Errorf("Map (-want +got):\n%s", diff)
	}
}

func TestOverrideChangedFiles(t *testing.T) {
	got := OverrideChangedFiles([]string{"b", "a", "b", "c", "a"})
	want := ChangedFiles{All: []string{"b", "a", "c"}, Added: []string{}, Modified: []string{"b", "a", "c"},
		Removed: []string{}, Source: SourceOverride}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("OverrideChangedFiles (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{
		"all": []any{}, "added": []any{}, "modified": []any{}, "removed": []any{},
		"count": int64(0), "truncated": false, "source": "override",
	}, OverrideChangedFiles(nil).Map()); diff != "" {
		t.Errorf("OverrideChangedFiles(nil).Map() (-want +got):\n%s", diff)
	}
}

func TestChangedFilesSources(t *testing.T) {
	e := &PushEvent{Ref: "refs/heads/main", Before: shaA, After: shaB, TotalCommitsCount: 1,
		Commits: []Commit{{Added: []string{"x.go"}}}}

	var src ChangedFilesSource = PayloadSource{}
	got, err := src.ChangedFiles(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(PayloadChangedFiles(e), got); diff != "" {
		t.Errorf("PayloadSource (-want +got):\n%s", diff)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.ChangedFiles(ctx, e); !errors.Is(err, context.Canceled) {
		t.Errorf("PayloadSource with a cancelled context: err = %v, want context.Canceled", err)
	}

	fail := errors.New("api down")
	src = ChangedFilesFunc(func(ctx context.Context, e *PushEvent) (ChangedFiles, error) {
		return ChangedFiles{}, fail
	})
	if _, err := src.ChangedFiles(context.Background(), e); !errors.Is(err, fail) {
		t.Errorf("ChangedFilesFunc: err = %v, want %v", err, fail)
	}
}

// fromPayload is the ChangedFiles the payload gives with these lists, nil
// for an empty one (PayloadChangedFiles returns it empty, not nil).
func fromPayload(truncated bool, all, added, modified, removed []string) ChangedFiles {
	orEmpty := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	return ChangedFiles{All: orEmpty(all), Added: orEmpty(added), Modified: orEmpty(modified), Removed: orEmpty(removed),
		Truncated: truncated, Source: SourcePayload}
}
