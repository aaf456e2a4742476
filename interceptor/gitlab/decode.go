package gitlab

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/ciel-ci/ciel/internal/option"
)

// DefaultMaxBytes is the largest body Decode accepts unless WithMaxBytes says
// otherwise: 25 MiB. A push payload lists at most 20 commits; even with
// thousands of changed files each it stays far below this.
const DefaultMaxBytes = 25 << 20

// DefaultMaxDepth is the deepest nesting of JSON objects and arrays Decode
// accepts unless WithMaxDepth says otherwise. GitLab's payloads nest about
// six levels deep (merge request changes); 64 leaves ample room.
const DefaultMaxDepth = 64

// MaxDepthLimit is the largest value WithMaxDepth accepts: encoding/json's
// own nesting limit, and a bound on the reader's recursion.
const MaxDepthLimit = 10000

// ErrTooLarge is wrapped by the error Decode returns for a body over the
// size limit, so an HTTP layer can answer 413 (or Triggers' InvalidArgument)
// without parsing messages.
var ErrTooLarge = errors.New("webhook body too large")

// Header values GitLab sends in X-Gitlab-Event for the events with a typed
// form, and for system hooks, whose push and tag push payloads have the same
// shape as the project hooks'.
const (
	HeaderPush         = "Push Hook"
	HeaderTagPush      = "Tag Push Hook"
	HeaderMergeRequest = "Merge Request Hook"
	HeaderSystem       = "System Hook"
)

// Kind is the kind of a decoded event.
type Kind string

// The kinds Decode distinguishes. Every event that is not a push, a tag
// push or a merge request is KindOther; its body is still available,
// untyped, in Event.Body().
const (
	KindPush         Kind = "push"          // object_kind "push": commits pushed to a branch, or a branch created or deleted
	KindTagPush      Kind = "tag_push"      // object_kind "tag_push": a tag created or deleted
	KindMergeRequest Kind = "merge_request" // object_kind "merge_request": a merge request opened, updated, merged...
	KindOther        Kind = "other"         // pipelines, notes, issues, ...
)

// Event is a decoded GitLab webhook.
type Event struct {
	// Type is the X-Gitlab-Event header value Decode was given ("" if none).
	Type string
	// Kind is the event's kind, from object_kind checked against Type.
	Kind Kind
	// ObjectKind is the payload's object_kind ("" when absent or null).
	ObjectKind string
	// Push is the typed push or tag push event: non-nil exactly when Kind is
	// KindPush or KindTagPush. It shares strings and slices with Body;
	// treat both as read-only.
	Push *PushEvent
	// MergeRequest is the typed merge request event: non-nil exactly when
	// Kind is KindMergeRequest. It shares strings with Body.
	MergeRequest *MergeRequestEvent

	// tree is the body as decoded: its objects are *Object (Tree).
	tree     *Object
	bodyOnce sync.Once
	body     map[string]any
}

// Body is the JSON object exactly as encoding/json decodes it into a
// map[string]any (numbers are float64): CEL's body variable, the value
// Tekton Triggers' CEL interceptor sees. Its strings share memory with one
// copy of the request body. The maps are built on the first call (Tree
// reads the same values without them); treat them as read-only.
func (e *Event) Body() map[string]any {
	e.bodyOnce.Do(func() {
		if e.tree != nil {
			e.body = e.tree.Map()
		}
	})
	return e.body
}

// Equal reports whether e and o are the same event: the same exported
// fields and the same Body (go-cmp uses it).
func (e *Event) Equal(o *Event) bool {
	if e == nil || o == nil {
		return e == o
	}
	return e.Type == o.Type && e.Kind == o.Kind && e.ObjectKind == o.ObjectKind &&
		reflect.DeepEqual(e.Push, o.Push) && reflect.DeepEqual(e.MergeRequest, o.MergeRequest) &&
		reflect.DeepEqual(e.Body(), o.Body())
}

// Tree is the body as the decoder read it, with its objects as *Object
// rather than maps: what Body returns, without building the maps. nil for
// an Event not made by a Decoder.
func (e *Event) Tree() *Object { return e.tree }

// DecodeOption configures Decode and NewDecoder.
type DecodeOption func(*decodeOptions) error

type decodeOptions struct {
	maxBytes int
	maxDepth int
	shared   bool
}

// WithMaxBytes sets the largest body accepted, in bytes. Default:
// DefaultMaxBytes (25 MiB). n must be positive.
func WithMaxBytes(n int) DecodeOption {
	return option.Check(n > 0, fmt.Sprintf("max bytes must be positive, got %d", n), func(o *decodeOptions) { o.maxBytes = n })
}

// WithMaxDepth sets the deepest nesting of JSON objects and arrays accepted;
// the top-level object is level 1. Default: DefaultMaxDepth (64). n must be
// between 1 and MaxDepthLimit.
func WithMaxDepth(n int) DecodeOption {
	return option.Check(n >= 1 && n <= MaxDepthLimit, fmt.Sprintf("max depth must be between 1 and %d, got %d", MaxDepthLimit, n),
		func(o *decodeOptions) { o.maxDepth = n })
}

// WithSharedBody makes Decode keep the body's bytes instead of copying them:
// the strings of the Event (Body's keys and values, Push's fields) then point
// into body itself. The caller guarantees that body is never written again
// while the Event, or any value taken from it, is reachable — as the
// interceptor's server does, which reads each request into a buffer of its
// own that nothing writes after the envelope's in-place unescape. Without
// that guarantee (a caller that reuses its buffer, cel-eval, tests) leave it
// off. Default: off, the body is copied once and the caller may reuse it.
func WithSharedBody() DecodeOption {
	return option.Always(func(o *decodeOptions) { o.shared = true })
}

// SharedBody returns a decoder with d's limits that shares the bodies it
// decodes (WithSharedBody), for callers that own bodies nothing writes
// again; d itself is unchanged.
func (d *Decoder) SharedBody() *Decoder {
	o := d.opts
	o.shared = true
	return &Decoder{opts: o}
}

// Decoder decodes webhooks with fixed options. It is safe for concurrent use.
type Decoder struct {
	opts decodeOptions
}

// NewDecoder validates opts once, for callers decoding many bodies.
func NewDecoder(opts ...DecodeOption) (*Decoder, error) {
	o := decodeOptions{maxBytes: DefaultMaxBytes, maxDepth: DefaultMaxDepth}
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("configuring the webhook decoder: nil option")
		}
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("configuring the webhook decoder: %w", err)
		}
	}
	return &Decoder{opts: o}, nil
}

// Decode reads a webhook body once. eventType is the X-Gitlab-Event header
// value ("Push Hook", "Tag Push Hook", ...), or "" when unknown (cel-eval
// with a bare payload): the kind then comes from object_kind alone.
//
// The body must be one JSON object of valid UTF-8, within the size and depth
// limits, with nothing but whitespace after it. For a push or tag push, the
// header and object_kind must agree and the fields GitLab documents must
// have their documented JSON types (null counts as absent); Event.Push is
// then set. Errors name what is wrong: a byte offset with line and column
// for syntax, a JSON path such as commits[3].added[0] for a wrong type.
func Decode(eventType string, body []byte, opts ...DecodeOption) (*Event, error) {
	d, err := NewDecoder(opts...)
	if err != nil {
		return nil, err
	}
	return d.Decode(eventType, body)
}

// Decode is the package-level Decode with d's options.
func (d *Decoder) Decode(eventType string, body []byte) (*Event, error) {
	ev, _, err := d.DecodeSized(eventType, body)
	return ev, err
}

// DecodeSized is Decode that also returns the size of the largest string
// (in bytes, at least its characters), list (elements) or map (entries) of
// the event's Body, measured while reading it: what the engine's cost
// proof needs to know.
func (d *Decoder) DecodeSized(eventType string, body []byte) (*Event, int, error) {
	if len(body) > d.opts.maxBytes {
		return nil, 0, fmt.Errorf("%w: %d bytes, over the limit of %s; raise the body size limit to accept it",
			ErrTooLarge, len(body), humanBytes(d.opts.maxBytes))
	}
	v, size, blocks, err := parseJSONBlocks(body, d.opts.maxDepth, d.opts.shared)
	if err != nil {
		return nil, 0, fmt.Errorf("decoding webhook body: %w", err)
	}
	obj, ok := v.(*Object)
	if !ok {
		return nil, 0, fmt.Errorf("decoding webhook body: got %s, want a JSON object", jsonTypeArticle(v))
	}
	ev := &Event{Type: eventType, tree: obj}
	switch k := obj.field("object_kind").(type) {
	case nil:
	case string:
		ev.ObjectKind = k
	default:
		return nil, 0, fmt.Errorf("decoding webhook body: object_kind: want string, got %s", jsonType(k))
	}
	if ev.Kind, err = kindOf(eventType, ev.ObjectKind); err != nil {
		return nil, 0, fmt.Errorf("decoding webhook body: %w", err)
	}
	switch ev.Kind {
	case KindOther:
		return ev, size, nil
	case KindMergeRequest:
		if ev.MergeRequest, err = mergeRequestFromBody(obj); err != nil {
			return nil, 0, fmt.Errorf("decoding %s event: %w", ev.Kind, err)
		}
		return ev, size, nil
	}
	if ev.Push, err = pushFromBody(obj, blocks); err != nil {
		return nil, 0, fmt.Errorf("decoding %s event: %w", ev.Kind, err)
	}
	return ev, size, nil
}

// kindOf resolves the event kind from the header and object_kind. A push or
// tag push must arrive under its own header, under the system hook header, or
// with no header at all; a header that promises a push must bring one.
//
// GitLab's "Test" button for tag push events has sent branch push payloads
// under "Tag Push Hook" (gitlab-org/gitlab#277356): that is rejected here
// rather than built as a tag push of a branch.
func kindOf(header, objectKind string) (Kind, error) {
	var kind Kind
	switch objectKind {
	case string(KindPush):
		kind = KindPush
	case string(KindTagPush):
		kind = KindTagPush
	case string(KindMergeRequest):
		kind = KindMergeRequest
	default:
		kind = KindOther
	}
	switch header {
	case "", HeaderSystem:
		return kind, nil
	case HeaderPush:
		if kind != KindPush {
			return "", fmt.Errorf("X-Gitlab-Event %q wants object_kind %q, got %s", header, KindPush, describeKind(objectKind))
		}
	case HeaderTagPush:
		if kind != KindTagPush {
			return "", fmt.Errorf("X-Gitlab-Event %q wants object_kind %q, got %s", header, KindTagPush, describeKind(objectKind))
		}
	case HeaderMergeRequest:
		if kind != KindMergeRequest {
			return "", fmt.Errorf("X-Gitlab-Event %q wants object_kind %q, got %s", header, KindMergeRequest, describeKind(objectKind))
		}
	default:
		if kind != KindOther {
			return "", fmt.Errorf("object_kind %q arrived with X-Gitlab-Event %q; GitLab sends it with %q or %q",
				objectKind, header, headerFor(kind), HeaderSystem)
		}
	}
	return kind, nil
}

func headerFor(k Kind) string {
	switch k {
	case KindTagPush:
		return HeaderTagPush
	case KindMergeRequest:
		return HeaderMergeRequest
	}
	return HeaderPush
}

func describeKind(objectKind string) string {
	if objectKind == "" {
		return "none"
	}
	return fmt.Sprintf("%q", objectKind)
}

// humanBytes spells a limit in bytes, with MiB or KiB when exact.
func humanBytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d bytes (%d MiB)", n, n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d bytes (%d KiB)", n, n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any, *Object:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func jsonTypeArticle(v any) string {
	switch t := jsonType(v); t {
	case "null":
		return "null"
	case "array", "object":
		return "an " + t
	default:
		return "a " + t
	}
}
