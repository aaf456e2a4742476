package celcompat_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sameExpressions must give the same outcome in Triggers and in ciel: the
// same value and type, or both an error (messages may differ).
var sameExpressions = []string{
	// Variables.
	`body.object_kind`, `body.project_id`, `body.project_id + 1.0`, `int(body.project_id) + 1`,
	`body.commits[0].added`, `header['X-Gitlab-Event'][0]`, `header`, `requestURL`, `extensions.note`,
	`extensions.changed_files.all`, `body.missing`, `has(body.missing)`, `has(body.project.web_url)`,
	`body.project_id * 3`, `body.numbers`, `body.nested`,

	// match and canonical.
	`header.match('X-Gitlab-Event', 'Push Hook')`, `header.match('x-gitlab-event', 'Push Hook')`,
	`header.match('x-gitlab-event', 'push hook')`, `header.match('X-None', '')`, `header.match('x-multi', 'two')`,
	`header.canonical('x-gitlab-token')`, `header.canonical('X-MULTI')`, `header.canonical('none')`,
	`body.match('a', 'b')`, `body.canonical('a')`, `extensions.canonical('note')`,

	// truncate.
	`body.checkout_sha.truncate(8)`, `body.checkout_sha.truncate(0)`, `body.checkout_sha.truncate(100)`,
	`body.object_kind.truncate(4)`, `body.project.truncate(2)`, `'abc'.truncate(-1)`,

	// split, join and the rest of cel-go's Strings.
	`body.ref.split('/')`, `body.ref.split('/').last()`, `body.ref.split('/', 3)`, `body.ref.split('')`,
	`['refs', 'heads', 'main'].join('/')`, `body.commits[0].added.join(',')`, `body.numbers.join(',')`,
	`body.ref.replace('refs/heads/', '')`, `body.object_kind.upperAscii()`, `'ÀB'.lowerAscii()`,
	`body.ref.substring(11)`, `body.ref.substring(body.ref.lastIndexOf('/') + 1)`, `'tacocat'.substring(2, 1)`, `body.ref.indexOf('/')`, `body.ref.lastIndexOf('/')`, `'  x '.trim()`,
	`body.ref.charAt(0)`, `'%s-%d'.format(['a', 1])`, `strings.quote('a"b')`, `'abc'.reverse()`,

	// translate.
	`body.ref.translate('[^a-zA-Z0-9]+', '-')`, `body.ref.translate('^refs/heads/(.*)$', '$1')`,
	`body.ref.lowerAscii().translate('[^a-z0-9]+', '')`, `'x'.translate('[', '')`, `'aaa'.translate('a*', 'b')`,

	// base64 (Encoders).
	`base64.decode(body.b64)`, `string(base64.decode(body.b64))`, `base64.encode(b'hello')`,
	`base64.decode('!!')`, `base64.decode(body.b64bin)`,

	// parseJSON.
	`body.json.parseJSON()`, `body.json.parseJSON().a.b[1]`, `body.json.parseJSON().n`, `body.json.parseJSON().n == 12345678901`,
	`body.badjson.parseJSON()`, `'[1]'.parseJSON()`, `'null'.parseJSON()`, `'{}'.parseJSON()`, `'"x"'.parseJSON()`,
	`'{"a":1,"a":2}'.parseJSON().a`, `body.commits.parseJSON()`,

	// parseYAML.
	`body.yaml.parseYAML()`, `body.yaml.parseYAML().c.d`, `'a: [1'.parseYAML()`, `'- 1'.parseYAML()`, `''.parseYAML()`,
	`'1: x'.parseYAML()`,

	// parseURL.
	`body.url.parseURL()`, `requestURL.parseURL().query.trigger`, `'::bad'.parseURL()`, `'relative/path'.parseURL()`,
	`'https://h/p'.parseURL()`, `body.url.parseURL().queryStrings.x`, `'https://u@h'.parseURL().auth`,

	// marshalJSON.
	`body.nested.marshalJSON()`, `body.commits.marshalJSON()`, `body.numbers.marshalJSON()`, `[].marshalJSON()`,
	`{}.marshalJSON()`, `{'h': body.html}.marshalJSON()`, `[b'hi'].marshalJSON()`, `[1, 2u, 3.5].marshalJSON()`,
	`body.marshalJSON().size() > 100`, `body.object_kind.marshalJSON()`, `[null, true].marshalJSON()`,
	`[timestamp('2024-01-01T00:00:00Z')].marshalJSON()`, `[duration('1s')].marshalJSON()`, `{1: 2}.marshalJSON()`,

	// first and last.
	`body.commits.first().id`, `body.commits.last().id`, `body.empty.first()`, `body.empty.last()`,
	`[1, 2].first()`, `[].last()`, `body.object_kind.first()`,

	// compareSecret.
	`header.canonical('X-Gitlab-Token').compareSecret('token', 'gitlab-webhook')`,
	`'wrong'.compareSecret('token', 'gitlab-webhook')`,
	`header.canonical('X-Gitlab-Token').compareSecret('token', 'gitlab-webhook', 'other')`,
	`'other'.compareSecret('token', 'gitlab-webhook', 'other')`,
	`'x'.compareSecret('token', 'missing')`, `'x'.compareSecret('missing', 'gitlab-webhook')`,
	`body.commits.exists(c, c.id.compareSecret('token', 'gitlab-webhook'))`,

	// Sets, Lists, Math.
	`sets.contains(body.numbers, [1, 3])`, `sets.intersects(body.numbers, [4, 3])`, `sets.equivalent([1, 2], [2, 1])`,
	`[1, 2, 3, 4].slice(1, 3)`, `[1,2,3].slice(2, 1)`, `lists.range(size(body.commits))`,
	`lists.range(size(body.commits)).map(i, body.commits[i].id.substring(0, 7))`, `[[1], [2, [3]]].flatten()`, `lists.range(3)`, `[3, 1, 2].sort()`, `[1, 1, 2].distinct()`,
	`body.commits.sortBy(c, c.id).map(c, c.id)`, `math.greatest(body.numbers)`, `math.least([1, 2.5])`,
	`math.ceil(2.1)`, `math.abs(-3)`, `math.bitOr(1, 2)`,

	// Macros and operators on the payload.
	`body.commits.map(c, c.modified).flatten()`, `body.commits.exists(c, 'README.md' in c.modified)`,
	`body.commits.all(c, c.id.size() == 40)`, `body.commits.exists_one(c, c.removed.size() > 0)`,
	`body.commits.filter(c, c.message.contains('readme')).size()`, `body.ref.startsWith('refs/heads/')`,
	`body.ref.matches('^refs/heads/feature/')`, `body.total_commits_count > 3`, `body.total_commits_count == 4`,
	`body.unicode.size()`, `size(body.commits)`, `body.project_id in [15.0, 16.0]`, `type(body.project_id)`,
	`cel.bind(x, body.ref.split('/'), x.size())`, `dyn(body.project_id) == 15`,
}

// failing are the sameExpressions that fail in both implementations (at
// compile time or at evaluation); every other one must produce a value, so
// that no case passes by failing twice.
var failing = map[string]bool{
	`body.missing`: true, `body.project_id * 3`: true, `body.match('a', 'b')`: true, `body.canonical('a')`: true,
	`extensions.canonical('note')`: true, `body.project.truncate(2)`: true, `'abc'.truncate(-1)`: true,
	`body.numbers.join(',')`: true, `'x'.translate('[', '')`: true, `base64.decode('!!')`: true,
	`body.badjson.parseJSON()`: true, `'[1]'.parseJSON()`: true, `'"x"'.parseJSON()`: true, `body.commits.parseJSON()`: true,
	`'a: [1'.parseYAML()`: true, `'- 1'.parseYAML()`: true, `'::bad'.parseURL()`: true, `body.object_kind.marshalJSON()`: true,
	`{1: 2}.marshalJSON()`: true, `body.object_kind.first()`: true, `'x'.compareSecret('token', 'missing')`: true,
	`'x'.compareSecret('missing', 'gitlab-webhook')`: true,
	`'tacocat'.substring(2, 1)`:                      true, `[1,2,3].slice(2, 1)`: true, // range errors at evaluation, both sides
	`cel.bind(x, body.ref.split('/'), x.size())`: true, // Triggers does not declare cel-go's Bindings
}

// knownDifferences are expressions on which ciel deliberately differs from
// Triggers; both outcomes are pinned here and listed in docs/cel-reference.md.
var knownDifferences = []struct {
	expr          string
	why           string
	triggers, our outcome
}{{
	expr:     `body.unicode.truncate(2)`,
	why:      "Triggers slices bytes and cuts 'é' in half: invalid UTF-8, which its overlay rendering then refuses; ciel counts characters",
	triggers: outcome{Compiled: true, Type: "string", Err: true},
	our:      outcome{Compiled: true, Type: "string", JSON: `"hé"`},
}, {
	expr:     `body.b64.decodeb64()`,
	why:      "documented by Triggers but no longer declared by its interceptor",
	triggers: outcome{},
	our:      outcome{Compiled: true, Type: "string", JSON: `"hello world"`},
}}

// TestDifferential runs every expression through Triggers' interceptor and
// through ciel's engine (Compile, Evaluate) and requires the same outcome.
func TestDifferential(t *testing.T) {
	h := newHarness(t)
	req := payloadRequest()
	treq := h.triggersRequest(t, req)
	for _, expr := range sameExpressions {
		t.Run(expr, func(t *testing.T) {
			want, tmsg := h.runTriggers(treq, expr)
			if failed := !want.Compiled || want.Err; failed != failing[expr] {
				t.Errorf("%s: Triggers failed = %v (%s), want %v", expr, failed, tmsg, failing[expr])
			}
			got, cmsg := h.runCiel(req, expr)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: Triggers and ciel differ (-triggers +ciel):\n%s\ntriggers: %s\nciel: %s", expr, diff, tmsg, cmsg)
			}
		})
	}
}

func TestKnownDifferences(t *testing.T) {
	h := newHarness(t)
	req := payloadRequest()
	treq := h.triggersRequest(t, req)
	for _, tc := range knownDifferences {
		t.Run(tc.expr, func(t *testing.T) {
			got, msg := h.runTriggers(treq, tc.expr)
			if diff := cmp.Diff(tc.triggers, got); diff != "" {
				t.Errorf("Triggers no longer behaves as recorded (%s) (-recorded +now):\n%s\n%s", tc.why, diff, msg)
			}
			got, msg = h.runCiel(req, tc.expr)
			if diff := cmp.Diff(tc.our, got); diff != "" {
				t.Errorf("ciel (-want +got):\n%s\n%s", diff, msg)
			}
		})
	}
}

// TestTruncatePanics pins the Triggers bug we do not reproduce: a negative
// length slices with a negative bound and panics (recovered by cel-go into
// an "internal error"); ciel returns a CEL error.
func TestTruncatePanics(t *testing.T) {
	h := newHarness(t)
	req := payloadRequest()
	_, msg := h.runTriggers(h.triggersRequest(t, req), `'abc'.truncate(-1)`)
	if want := "internal error"; !contains(msg, want) {
		t.Errorf("Triggers: %q, want it to contain %q", msg, want)
	}
	_, msg = h.runCiel(req, `'abc'.truncate(-1)`)
	if want := "truncate: negative length -1"; !contains(msg, want) {
		t.Errorf("ciel: %q, want it to contain %q", msg, want)
	}
}
