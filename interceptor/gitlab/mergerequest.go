package gitlab

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// MergeRequestEvent is a merge request webhook (object_kind
// "merge_request", header "Merge Request Hook"), with the fields of
// GitLab's "Merge request events" documentation that ciel reads or that a
// typed rule may read. A field that is absent or null holds its zero
// value: GitLab sends object_attributes.oldrev only on an update that
// pushed commits, and changes only lists what this event changed.
type MergeRequestEvent struct {
	ObjectKind       string                 `json:"object_kind"` // "merge_request"
	EventType        string                 `json:"event_type"`  // "merge_request"
	User             User                   `json:"user"`        // who caused the event
	Project          Project                `json:"project"`     // the target project
	ObjectAttributes MergeRequestAttributes `json:"object_attributes"`
	Labels           []Label                `json:"labels"`
	Changes          MergeRequestChanges    `json:"changes"`
	Repository       Repository             `json:"repository"`
	Assignees        []User                 `json:"assignees"`
	Reviewers        []User                 `json:"reviewers"`
}

// User is a GitLab user as webhooks describe one.
type User struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Username  string `json:"username"`
	AvatarURL string `json:"avatar_url"`
	Email     string `json:"email"` // "" or "[REDACTED]" without a public email
}

// MergeRequestAttributes is a merge request event's object_attributes.
type MergeRequestAttributes struct {
	ID              int64   `json:"id"`
	IID             int64   `json:"iid"` // the number shown as !57
	Title           string  `json:"title"`
	Description     string  `json:"description"`
	State           string  `json:"state"`  // opened, closed, merged, locked
	Action          string  `json:"action"` // open, close, reopen, update, approved, unapproved, approval, unapproval, merge
	SourceBranch    string  `json:"source_branch"`
	TargetBranch    string  `json:"target_branch"`
	SourceProjectID int64   `json:"source_project_id"`
	TargetProjectID int64   `json:"target_project_id"`
	AuthorID        int64   `json:"author_id"`
	AssigneeID      int64   `json:"assignee_id"`
	AssigneeIDs     []int64 `json:"assignee_ids"`
	ReviewerIDs     []int64 `json:"reviewer_ids"`
	MilestoneID     int64   `json:"milestone_id"`
	// Draft and WorkInProgress are the same flag; GitLab sends both.
	Draft                       bool    `json:"draft"`
	WorkInProgress              bool    `json:"work_in_progress"`
	MergeStatus                 string  `json:"merge_status"`
	DetailedMergeStatus         string  `json:"detailed_merge_status"`
	BlockingDiscussionsResolved bool    `json:"blocking_discussions_resolved"`
	FirstContribution           bool    `json:"first_contribution"`
	MergeCommitSHA              string  `json:"merge_commit_sha"`
	URL                         string  `json:"url"`
	CreatedAt                   string  `json:"created_at"`
	UpdatedAt                   string  `json:"updated_at"`
	PreparedAt                  string  `json:"prepared_at"`
	Source                      Project `json:"source"` // the source project: a fork's for a fork MR
	Target                      Project `json:"target"`
	LastCommit                  Commit  `json:"last_commit"` // the MR's head commit
	Labels                      []Label `json:"labels"`
	// OldRev is the previous head on an update that pushed commits (or
	// applied a suggestion); "" otherwise.
	OldRev string `json:"oldrev"`
}

// Label is a project or group label.
type Label struct {
	ID          int64  `json:"id"`
	Title       string `json:"title"`
	Color       string `json:"color"`
	ProjectID   int64  `json:"project_id"`
	GroupID     int64  `json:"group_id"`
	Description string `json:"description"`
	Type        string `json:"type"` // ProjectLabel or GroupLabel
	Template    bool   `json:"template"`
	CreatedAt   string `json:"created_at"`
	UpdatedAt   string `json:"updated_at"`
}

// MergeRequestChanges is what this event changed, each field as GitLab's
// {"previous": ..., "current": ...}. Only the fields ciel reads are typed;
// the rest stay in the untyped body.
type MergeRequestChanges struct {
	Labels       *LabelsChange  `json:"labels,omitempty"`
	Draft        *BoolChange    `json:"draft,omitempty"`
	Title        *StringChange  `json:"title,omitempty"`
	Description  *StringChange  `json:"description,omitempty"`
	TargetBranch *StringChange  `json:"target_branch,omitempty"`
	UpdatedAt    *StringChange  `json:"updated_at,omitempty"`
	StateID      *IntegerChange `json:"state_id,omitempty"`
}

// Change is a changed attribute: its value before and after the event.
type Change[T any] struct {
	Previous T `json:"previous"`
	Current  T `json:"current"`
}

// LabelsChange is changes.labels.
type LabelsChange = Change[[]Label]

// BoolChange is a changed boolean attribute.
type BoolChange = Change[bool]

// StringChange is a changed string attribute.
type StringChange = Change[string]

// IntegerChange is a changed integer attribute.
type IntegerChange = Change[int64]

// mergeRequestFromBody builds the typed event from the decoded body,
// checking every typed field's JSON type.
func mergeRequestFromBody(m fields) (*MergeRequestEvent, error) {
	r := fieldReader{path: make([]pathSeg, 0, 6)}
	e := &MergeRequestEvent{
		ObjectKind: r.str(m, "object_kind"),
		EventType:  r.str(m, "event_type"),
		User:       r.user(m, "user"),
		Project:    r.project(m, "project"),
		Labels:     r.labels(m, "labels"),
		Assignees:  r.users(m, "assignees"),
		Reviewers:  r.users(m, "reviewers"),
	}
	e.Repository = r.repository(m, "repository")
	a := r.object(m, "object_attributes")
	if a != nil {
		r.enter("object_attributes")
		e.ObjectAttributes = MergeRequestAttributes{
			ID:                          r.integer(a, "id"),
			IID:                         r.integer(a, "iid"),
			Title:                       r.str(a, "title"),
			Description:                 r.str(a, "description"),
			State:                       r.str(a, "state"),
			Action:                      r.str(a, "action"),
			SourceBranch:                r.str(a, "source_branch"),
			TargetBranch:                r.str(a, "target_branch"),
			SourceProjectID:             r.integer(a, "source_project_id"),
			TargetProjectID:             r.integer(a, "target_project_id"),
			AuthorID:                    r.integer(a, "author_id"),
			AssigneeID:                  r.integer(a, "assignee_id"),
			AssigneeIDs:                 r.integers(a, "assignee_ids"),
			ReviewerIDs:                 r.integers(a, "reviewer_ids"),
			MilestoneID:                 r.integer(a, "milestone_id"),
			Draft:                       r.boolean(a, "draft"),
			WorkInProgress:              r.boolean(a, "work_in_progress"),
			MergeStatus:                 r.str(a, "merge_status"),
			DetailedMergeStatus:         r.str(a, "detailed_merge_status"),
			BlockingDiscussionsResolved: r.boolean(a, "blocking_discussions_resolved"),
			FirstContribution:           r.boolean(a, "first_contribution"),
			MergeCommitSHA:              r.str(a, "merge_commit_sha"),
			URL:                         r.str(a, "url"),
			CreatedAt:                   r.str(a, "created_at"),
			UpdatedAt:                   r.str(a, "updated_at"),
			PreparedAt:                  r.str(a, "prepared_at"),
			Source:                      r.project(a, "source"),
			Target:                      r.project(a, "target"),
			Labels:                      r.labels(a, "labels"),
			OldRev:                      r.str(a, "oldrev"),
		}
		if c := r.object(a, "last_commit"); c != nil {
			r.enter("last_commit")
			e.ObjectAttributes.LastCommit = Commit{
				ID:        r.str(c, "id"),
				Message:   r.str(c, "message"),
				Title:     r.str(c, "title"),
				Timestamp: r.str(c, "timestamp"),
				URL:       r.str(c, "url"),
			}
			if au := r.object(c, "author"); au != nil {
				r.enter("author")
				e.ObjectAttributes.LastCommit.Author = Author{Name: r.str(au, "name"), Email: r.str(au, "email")}
				r.leave()
			}
			r.leave()
		}
		r.leave()
	}
	if c := r.object(m, "changes"); c != nil {
		r.enter("changes")
		e.Changes = MergeRequestChanges{
			Labels:       readChange(&r, c, "labels", (*fieldReader).labels),
			Draft:        readChange(&r, c, "draft", (*fieldReader).boolean),
			Title:        readChange(&r, c, "title", (*fieldReader).str),
			Description:  readChange(&r, c, "description", (*fieldReader).str),
			TargetBranch: readChange(&r, c, "target_branch", (*fieldReader).str),
			UpdatedAt:    readChange(&r, c, "updated_at", (*fieldReader).str),
			StateID:      readChange(&r, c, "state_id", (*fieldReader).integer),
		}
		r.leave()
	}
	if r.err != nil {
		return nil, r.err
	}
	oa := &e.ObjectAttributes
	switch {
	case a == nil:
		return nil, errors.New("object_attributes: missing; a merge_request event describes the merge request there")
	case oa.IID <= 0:
		return nil, fmt.Errorf("object_attributes.iid: want the merge request's positive number, got %d", oa.IID)
	case oa.SourceBranch == "" || oa.TargetBranch == "":
		return nil, errors.New("object_attributes.source_branch and target_branch: a merge request names both branches")
	case oa.TargetProjectID <= 0 && e.Project.ID <= 0:
		return nil, errors.New("object_attributes.target_project_id: missing; a merge request names its target project")
	}
	if oa.LastCommit.ID != "" && !isHexSHA(oa.LastCommit.ID) {
		return nil, fmt.Errorf("object_attributes.last_commit.id %q: want a commit SHA (40 or 64 hexadecimal digits)", truncateForError(oa.LastCommit.ID))
	}
	if oa.OldRev != "" && !isHexSHA(oa.OldRev) {
		return nil, fmt.Errorf("object_attributes.oldrev %q: want a commit SHA (40 or 64 hexadecimal digits)", truncateForError(oa.OldRev))
	}
	return e, nil
}

// isHexSHA reports whether s is a full SHA-1 or SHA-256 object name.
func isHexSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

func truncateForError(s string) string {
	if len(s) > 70 {
		return s[:67] + "..."
	}
	return s
}

func (r *fieldReader) project(m fields, key string) Project {
	return nested(r, m, key, func(p fields) Project {
		return Project{
			ID:                r.integer(p, "id"),
			Name:              r.str(p, "name"),
			Description:       r.str(p, "description"),
			WebURL:            r.str(p, "web_url"),
			AvatarURL:         r.str(p, "avatar_url"),
			GitSSHURL:         r.str(p, "git_ssh_url"),
			GitHTTPURL:        r.str(p, "git_http_url"),
			Namespace:         r.str(p, "namespace"),
			VisibilityLevel:   r.integer(p, "visibility_level"),
			PathWithNamespace: r.str(p, "path_with_namespace"),
			DefaultBranch:     r.str(p, "default_branch"),
			CIConfigPath:      r.str(p, "ci_config_path"),
			Homepage:          r.str(p, "homepage"),
			URL:               r.str(p, "url"),
			SSHURL:            r.str(p, "ssh_url"),
			HTTPURL:           r.str(p, "http_url"),
		}
	})
}

func (r *fieldReader) repository(m fields, key string) Repository {
	return nested(r, m, key, func(p fields) Repository {
		return Repository{
			Name:            r.str(p, "name"),
			URL:             r.str(p, "url"),
			Description:     r.str(p, "description"),
			Homepage:        r.str(p, "homepage"),
			GitHTTPURL:      r.str(p, "git_http_url"),
			GitSSHURL:       r.str(p, "git_ssh_url"),
			VisibilityLevel: r.integer(p, "visibility_level"),
		}
	})
}

func (r *fieldReader) userAt(u fields) User {
	return User{
		ID:        r.integer(u, "id"),
		Name:      r.str(u, "name"),
		Username:  r.str(u, "username"),
		AvatarURL: r.str(u, "avatar_url"),
		Email:     r.str(u, "email"),
	}
}

func (r *fieldReader) user(m fields, key string) User { return nested(r, m, key, r.userAt) }

// nested reads the object at key with read, naming errors under key; the
// zero T when there is none.
func nested[T any](r *fieldReader, m fields, key string, read func(fields) T) T {
	o := r.object(m, key)
	if o == nil {
		var zero T
		return zero
	}
	r.enter(key)
	defer r.leave()
	return read(o)
}

// each calls f with every element of the array at key, which must be an
// object, with the path entered.
func (r *fieldReader) each(m fields, key string, f func(i int, obj fields)) int {
	list := r.array(m, key)
	if list == nil {
		return -1
	}
	r.enter(key)
	defer r.leave()
	for i, item := range list {
		obj, ok := asFields(item)
		if !ok {
			r.failIndex(i, "object", item)
			return len(list)
		}
		r.enterIndex(i)
		f(i, obj)
		r.leave()
		if r.err != nil {
			break
		}
	}
	return len(list)
}

func (r *fieldReader) users(m fields, key string) []User {
	out := objectList(r, m, key, r.userAt)
	if len(out) == 0 {
		return nil // GitLab's [] and an absent list read the same
	}
	return out
}

// objectList reads the array of objects at key, each with read; nil when
// there is none.
func objectList[T any](r *fieldReader, m fields, key string, read func(fields) T) []T {
	list := r.array(m, key)
	if list == nil {
		return nil
	}
	out := make([]T, len(list))
	r.each(m, key, func(i int, o fields) { out[i] = read(o) })
	return out
}

func (r *fieldReader) labels(m fields, key string) []Label {
	return objectList(r, m, key, func(l fields) Label {
		return Label{
			ID:          r.integer(l, "id"),
			Title:       r.str(l, "title"),
			Color:       r.str(l, "color"),
			ProjectID:   r.integer(l, "project_id"),
			GroupID:     r.integer(l, "group_id"),
			Description: r.str(l, "description"),
			Type:        r.str(l, "type"),
			Template:    r.boolean(l, "template"),
			CreatedAt:   r.str(l, "created_at"),
			UpdatedAt:   r.str(l, "updated_at"),
		}
	})
}

func (r *fieldReader) integers(m fields, key string) []int64 {
	list := r.array(m, key)
	if list == nil {
		return nil
	}
	out := make([]int64, len(list))
	r.enter(key)
	defer r.leave()
	for i, item := range list {
		v, ok := item.(float64)
		if !ok || v != math.Trunc(v) || math.Abs(v) > maxExactInt {
			r.enterIndex(i)
			if ok {
				r.failHere("integer", "number "+strconv.FormatFloat(v, 'g', -1, 64))
			} else {
				r.failHere("integer", jsonType(item))
			}
			r.leave()
			return nil
		}
		out[i] = int64(v)
	}
	return out
}

// readChange reads the {"previous", "current"} object at key with read,
// or returns nil when there is none.
func readChange[T any](r *fieldReader, m fields, key string, read func(*fieldReader, fields, string) T) *Change[T] {
	return nested(r, m, key, func(c fields) *Change[T] {
		return &Change[T]{Previous: read(r, c, "previous"), Current: read(r, c, "current")}
	})
}
