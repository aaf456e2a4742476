package celenv

import (
	"context"
	"strings"
	"testing"
)

// TestTriggersFunctions holds, for every Triggers function and extension,
// the behaviour Triggers documents (docs/cel_expressions.md) and tests
// (pkg/interceptors/cel/cel_test.go), written as our own cases.
func TestTriggersFunctions(t *testing.T) {
	checkExprs(t, newEnv(t), testVars(), []valueCase{
		// Variables.
		{"body value", "body.value", "testing"},
		{"header list", "header['X-Test-Header'][0]", "value"},
		{"requestURL", "requestURL", "https://example.com/testing?param=value"},
		{"extensions", "extensions.foo", "bar"},
		{"json numbers are doubles", "body.pull_request.commits + 1", int64(3)},

		// match
		{"match exact name", "header.match('X-Test-Header', 'value')", true},
		{"match case-insensitive name", "header.match('x-test-header', 'value')", true},
		{"match other value", "header.match('x-test-header', 'other')", false},
		{"match missing header", "header.match('x-none', '')", true},
		{"match first value only", "header.match('X-Multi', 'second')", false},
		{"match gitlab event", "header.match('X-Gitlab-Event', 'Push Hook')", true},

		// canonical
		{"canonical exact", "header.canonical('X-Test-Header')", "value"},
		{"canonical lower case", "header.canonical('x-test-header')", "value"},
		{"canonical first value", "header.canonical('x-multi')", "first"},
		{"canonical missing", "header.canonical('x-none')", ""},

		// truncate
		{"truncate a long string", "body.sha.truncate(7)", "ec26c3e"},
		{"truncate to its own length", "body.value.truncate(7)", "testing"},
		{"truncate beyond its length", "body.sha.truncate(45)", testSHA},
		{"truncate to zero", "body.value.truncate(0)", ""},
		{"truncate counts characters", "'héllo'.truncate(2)", "hé"},
		{"truncate after split", "body.value.split('/')[0].truncate(2)", "te"},

		// split and join (cel-go Strings)
		{"split", "body.ref.split('/')", []any{"refs", "heads", "master"}},
		{"split without separator", "body.value.split('/')", []any{"testing"}},
		{"split documented", "'refs/heads/main'.split('/')", []any{"refs", "heads", "main"}},
		{"join documented", "['refs', 'heads', 'main'].join('/')", "refs/heads/main"},
		{"join body list", "body.jsonArray.join(', ')", "one, two"},
		{"replace documented", "'my place'.replace('my ',' ')", " place"},
		{"replace with limit 0", "body.value.replace('ing','ed',0)", "testing"},
		{"lowerAscii", "body.upperMsg.lowerAscii()", "this is lower case"},
		{"lowerAscii keeps non-ASCII", "'TacoCÆt Xii'.lowerAscii()", "tacocÆt xii"},
		{"upperAscii", "'TacoCÆt Xii'.upperAscii()", "TACOCÆT XII"},

		// translate
		{"translate removes", `"This is $an Invalid5String ".translate("[^a-z0-9]+", "")`, "hisisannvalid5tring"},
		// Triggers' documentation drops the last "ABC" (the trailing space).
		{"translate replaces", `"This is $an Invalid5String ".translate("[^a-z0-9]+", "ABC")`, "ABChisABCisABCanABCnvalid5ABCtringABC"},
		{"translate after lowerAscii", `"This is $an Invalid5String".lowerAscii().translate("[^a-z0-9]+", "ABC")`, "thisABCisABCanABCinvalid5string"},
		{"translate submatch", `'feature/JIRA-12'.translate('^feature/(.*)$', 'f-$1')`, "f-JIRA-12"},

		// decodeb64 (documented, deprecated) and base64 (cel-go Encoders)
		{"decodeb64", "body.b64value.decodeb64()", "example"},
		{"decodeb64 unpadded", "'aGVsbG8'.decodeb64()", "hello"},
		{"base64.decode", "base64.decode(body.b64value)", []byte("example")},
		{"base64.decode compared to bytes", "base64.decode(body.b64value) == b'example'", true},
		{"base64.decode to string", "string(base64.decode(body.b64value))", "example"},
		{"base64.encode", "base64.encode(b'example')", "ZXhhbXBsZQ=="},

		// parseJSON
		{"parseJSON", "body.json_body.parseJSON().testing == 'value'", true},
		{"parseJSON number equals an int variable", "body.json_body.parseJSON().number == body.jsonObject.integer", true},
		{"parseJSON number above an int", "body.json_body.parseJSON().number > 1", true},
		{"parseJSON number below a uint", "body.json_body.parseJSON().number < 3u", true},
		{"parseJSON number is a double", "body.json_body.parseJSON().number == 2.0", true},
		{"parseJSON field is not null", "body.json_body.parseJSON().number == null", false},
		{"parseJSON documented", `'{"testing":"value"}'.parseJSON().testing == "value"`, true},
		{"parseJSON null is an empty map", "'null'.parseJSON()", map[string]any{}},
		{"parseJSON nested", `'{"a":{"b":[1,true,null]}}'.parseJSON()`, map[string]any{"a": map[string]any{"b": []any{1.0, true, nil}}}},

		// parseYAML
		{"parseYAML", "body.yaml_body.parseYAML().key1 == 'value1'", true},
		{"parseYAML values", `'a: 1\nb: [x, true]\n'.parseYAML()`, map[string]any{"a": 1.0, "b": []any{"x", true}}},

		// parseURL
		{"parseURL path", "body.testURL.parseURL().path == '/path/to'", true},
		{"parseURL query", "body.testURL.parseURL().query['query'] == 'search'", true},
		{"parseURL queryStrings", "body.multiURL.parseURL().queryStrings['query']", []any{"search", "results"}},
		{"parseURL query joins", "body.multiURL.parseURL().query['query']", "search,results"},
		{"parseURL requestURL", "requestURL.parseURL().path", "/testing"},
		{"parseURL documented", "'https://user:pass@example.com/test/path?s=testing#first'.parseURL()", map[string]any{
			"scheme": "https", "host": "example.com", "path": "/test/path", "rawQuery": "s=testing", "fragment": "first",
			"query": map[string]any{"s": "testing"}, "queryStrings": map[string]any{"s": []any{"testing"}},
			"auth": map[string]any{"username": "user", "password": "pass"},
		}},
		{"parseURL without user has no auth", "has('https://example.com'.parseURL().auth)", false},

		// marshalJSON
		{"marshalJSON object", "body.jsonObject.marshalJSON()", `{"integer":2,"string":"value"}`},
		{"marshalJSON array", "body.jsonArray.marshalJSON()", `["one","two"]`},
		{"marshalJSON objects", "body.jsonObjects.marshalJSON()", `[{"testing1":{"testing":["test1","test2"]}}]`},
		{"marshalJSON literal", `{"testing":"value"}.marshalJSON()`, `{"testing":"value"}`},
		{"marshalJSON escapes HTML", "body.html.marshalJSON()", `{"s":"\u003ca href='x'\u003e\u0026\u003c/a\u003e"}`},
		{"marshalJSON bytes as base64", "[b'hi'].marshalJSON()", `["aGk="]`},

		// first and last
		{"last of split", "body.testURL.parseURL().path.split('/').last()", "to"},
		{"last of empty", "body.emptyList.last()", nil},
		{"last of numbers", "body.numbers.last()", int64(5)},
		{"last of literal", "[1, 2, 3, 4, 5].last()", int64(5)},
		{"first of literal", "[1, 2, 3, 4, 5].first()", int64(1)},
		{"first after filter", "body.testURL.parseURL().path.split('/').filter(t, t.size() > 0).first()", "path"},
		{"first of empty", "body.emptyList.first()", nil},
		{"first of numbers", "body.numbers.first()", int64(1)},

		// cel-go Sets, Lists, Math
		{"sets.contains", "sets.contains(body.numbers, [1, 6])", false},
		{"sets.contains all", "sets.contains(body.numbers, [1, 5])", true},
		{"slice", "[1,2,3,4].slice(1,3)", []any{int64(2), int64(3)}},
		{"math.greatest", "math.greatest(body.numbers)", int64(5)},

		// Macros from Triggers' documentation.
		{"exists", "body.jsonObjects.exists(x, has(x.testing1))", true},
		{"defaulting with has", "has(body.missing) ? body.missing : 'default'", "default"},
	}, wantValue)
}

// TestTriggersErrors holds the failures Triggers documents and tests, and
// the inputs on which Triggers panics or misbehaves and we return an error.
func TestTriggersErrors(t *testing.T) {
	checkExprs(t, newEnv(t), testVars(), []errorCase{
		{"unknown key", "body.val", "no such key: val"},
		{"invalid syntax", "body.value = 'testing'", "Syntax error"},
		{"unknown function", "trunca(body.sha, 7)", "undeclared reference to 'trunca'"},
		{"match on the body", "body.match('testing', 'test')", "failed to convert to http.Header"},
		{"canonical on the body", "body.canonical('testing')", "failed to convert to http.Header"},
		{"parseJSON invalid", "body.value.parseJSON().test == 'test'", "invalid character 'e' in literal"},
		{"parseJSON of a map", "body.pull_request.parseJSON().test == 'test'", "no such overload"},
		{"parseJSON of an array", "'[1]'.parseJSON()", "parseJSON: json: cannot unmarshal array"},
		{"parseYAML of a map", "body.pull_request.parseYAML().key1 == 'value1'", "no such overload"},
		{"parseYAML missing key", "body.valid_yaml.parseYAML().key3 == 'value3'", "no such key: key3"},
		{"parseYAML invalid", "body.invalid_yaml.parseYAML().key1 == 'value1'", "parseYAML: error converting YAML to JSON"},
		{"parseURL invalid", "':/x'.parseURL()", "parseURL: parse"},
		{"marshalJSON of a string", "body.value.marshalJSON()", "no such overload"},
		{"marshalJSON of a string literal", "'x'.marshalJSON()", "found no matching overload for 'marshalJSON'"},
		{"has on a missing parent", "has(body.pull_request.repository.owner) ? body.pull_request.repository.owner : 'me'", "no such key: repository"},
		{"truncate a map", "body.pull_request.truncate(7)", "no such overload"},
		{"truncate negative (Triggers panics)", "body.value.truncate(-1)", "truncate: negative length -1"},
		{"translate bad regexp", `body.value.translate("[^a-z0-9+", "")`, "failed to parse regular expression for translation: error parsing regexp: missing closing ]"},
		{"decodeb64 invalid", "'%%%'.decodeb64()", "decodeb64: illegal base64 data"},
		{"decodeb64 binary", "'/w=='.decodeb64()", "not UTF-8 text: use base64.decode"},
		{"first of a string", "'abc'.first()", "found no matching overload for 'first'"},
		{"compareSecret of an int", "1.compareSecret('a', 'b')", "found no matching overload for 'compareSecret'"},
	}, wantError)
}

// TestParseDoesNotEchoInput keeps a 100 kB payload out of error messages
// (Triggers puts the whole string in them).
func TestParseDoesNotEchoInput(t *testing.T) {
	env := newEnv(t)
	big := strings.Repeat("x", 100_000)
	for _, fn := range []string{"parseJSON", "parseYAML"} {
		_, _, err := eval(t, env, context.Background(), "body.big."+fn+"()", map[string]any{VarBody: map[string]any{"big": "{" + big}})
		if err == nil {
			t.Fatalf("%s of a bad document: no error", fn)
		}
		if len(err.Error()) > 1000 {
			t.Errorf("%s error is %d bytes long: %.200q...", fn, len(err.Error()), err)
		}
	}
}
