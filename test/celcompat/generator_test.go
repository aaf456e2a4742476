package celcompat_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// kind is the type of a generated expression. Values read from the body
// are dyn to the checker; the generator knows their JSON type from the
// payload, so that most expressions are well typed at runtime too.
type kind int

const (
	kStr kind = iota
	kInt
	kDbl
	kBool
	kStrList
	kIntList
	kObj     // a JSON object (map(string, dyn))
	kObjList // a list of JSON objects
	numKinds
)

// leaf is a value the payload or a comprehension variable provides.
type leaf struct {
	expr string
	val  any // the JSON value, for objects and lists of objects
}

// scope is what an expression can read: paths of the payload and of the
// comprehension variables in scope, by kind.
type scope struct {
	leaves [numKinds][]leaf
}

func (s *scope) with(expr string, v any, depth int) *scope {
	n := &scope{}
	for k := range s.leaves {
		n.leaves[k] = append([]leaf(nil), s.leaves[k]...)
	}
	n.addPaths(expr, v, depth)
	return n
}

var identRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// reserved are CEL words a field cannot be selected by.
var reserved = map[string]bool{"in": true, "as": true, "break": true, "const": true, "continue": true, "else": true,
	"for": true, "function": true, "if": true, "import": true, "let": true, "loop": true, "package": true,
	"namespace": true, "return": true, "var": true, "void": true, "while": true, "true": true, "false": true, "null": true}

// addPaths records expr and every path under it by the kind of its value.
func (s *scope) addPaths(expr string, v any, depth int) {
	switch v := v.(type) {
	case string:
		s.leaves[kStr] = append(s.leaves[kStr], leaf{expr: expr})
	case float64:
		s.leaves[kDbl] = append(s.leaves[kDbl], leaf{expr: expr})
	case bool:
		s.leaves[kBool] = append(s.leaves[kBool], leaf{expr: expr})
	case map[string]any:
		s.leaves[kObj] = append(s.leaves[kObj], leaf{expr: expr, val: v})
		if depth <= 0 {
			return
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if identRE.MatchString(k) && !reserved[k] {
				s.addPaths(expr+"."+k, v[k], depth-1)
			} else {
				s.addPaths(expr+"["+strconv.Quote(k)+"]", v[k], depth-1)
			}
		}
	case []any:
		switch listKind(v) {
		case kStrList:
			s.leaves[kStrList] = append(s.leaves[kStrList], leaf{expr: expr})
		case kObjList:
			s.leaves[kObjList] = append(s.leaves[kObjList], leaf{expr: expr, val: v[0]})
		}
		if depth > 0 && len(v) > 0 {
			s.addPaths(expr+"[0]", v[0], depth-1)
			if len(v) > 1 {
				s.addPaths(fmt.Sprintf("%s[%d]", expr, len(v)-1), v[len(v)-1], depth-1)
			}
		}
	}
}

func listKind(v []any) kind {
	if len(v) == 0 {
		return kStrList // an empty list is any list: commits, added, removed
	}
	switch v[0].(type) {
	case string:
		for _, e := range v {
			if _, ok := e.(string); !ok {
				return numKinds
			}
		}
		return kStrList
	case map[string]any:
		return kObjList
	}
	return numKinds
}

// generator builds random expressions from Triggers' functions, cel-go's
// Strings, Lists, Sets, Math and Encoders, CEL's macros and operators, and
// the paths of one payload.
type generator struct {
	r     *rand.Rand
	vars  int // comprehension variables made so far
	names []string
}

var (
	strLits = []string{`''`, `'/'`, `'refs/heads/'`, `'refs/tags/'`, `'main'`, `'master'`, `'v'`, `'.'`, `'-'`, `'a,b'`,
		`'src/'`, `'.md'`, `'push'`, `'x'`, `'é'`, `' padded '`, `'{"a": 1}'`, `'a: [1, 2]'`, `'https://h.example/p?q=1#f'`,
		`'README.md'`, `'%s'`, `'ABC'`}
	regexLits = []string{`'^refs/heads/'`, `'[^a-zA-Z0-9]+'`, `'(.*)/(.*)'`, `'^v[0-9]+'`, `'a*'`, `'\\.md$'`, `'['`}
	intLits   = []string{"0", "1", "2", "3", "7", "11", "-1", "40", "100"}
	dblLits   = []string{"0.0", "1.5", "-2.5", "42.0", "1e3"}
)

func (g *generator) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

func (g *generator) newVar() string {
	g.vars++
	return fmt.Sprintf("v%d", g.vars)
}

// leafOf returns a path of kind k, or a literal.
func (g *generator) leafOf(s *scope, k kind) string {
	if ls := s.leaves[k]; len(ls) > 0 && g.r.IntN(4) != 0 {
		return ls[g.r.IntN(len(ls))].expr
	}
	switch k {
	case kStr:
		return g.pick(strLits)
	case kInt:
		return g.pick(intLits)
	case kDbl:
		return g.pick(dblLits)
	case kBool:
		return g.pick([]string{"true", "false"})
	case kStrList:
		return g.pick([]string{"['a', 'b']", "[]", "['refs', 'heads', 'main']", "['x']"})
	case kIntList:
		return g.pick([]string{"[1, 2, 3]", "[]", "[3, 1, 2, 1]"})
	case kObj:
		return g.pick([]string{"{}", "{'a': 'b'}", "{'k': [1, 2]}"})
	case kObjList:
		return g.pick([]string{"[{'id': 'a'}]", "[{'id': 'a'}, {'id': 'b'}]"})
	}
	return "null"
}

// grammar holds, for each kind, the productions expr picks from with equal
// chance (a production listed n times is n times as likely). In a
// production, expanded left to right:
//
//	$S $I $D $B $L $N $O $A  an expression of kind kStr, kInt, kDbl, kBool,
//	                         kStrList, kIntList, kObj, kObjList (kindLetters)
//	$<XY>                    one of kind X or kind Y (pick2)
//	${a|b|c}                 one of the words a, b, c
//	$R                       a regular expression literal (regexLits)
//	$c(XY)                   a comprehension over kind X giving kind Y
//	$l                       a leaf of the production's kind (leafOf)
//
// hasField, objSubstrings and sortByReverse stand for productions written
// in Go.
var grammar = [numKinds][]string{
	kStr: {
		"$S.lowerAscii()", "$S.upperAscii()", "$S.trim()", "$S.reverse()", "$S.replace($S, $S)",
		"$S.substring($I)", "$S.substring($I, $I)", "$S.charAt($I)", "$S.truncate($I)", "$S.translate($R, $S)",
		"$L.join($S)", "$S + $S", "strings.quote($S)", "'%s-%d'.format([$S, $I])", "string($<ID>)",
		"base64.encode(bytes($S))", "string(base64.decode($S))", "$L[$I]", "$<OL>.marshalJSON()",
		"header.canonical(${'X-Gitlab-Event'|'x-gitlab-token'|'X-None'})", "$S.split($S).last()", "$L.first()",
		"$B ? $S : $S", "requestURL.parseURL().path", "string(timestamp($S))", "$S.matches($S) ? 'y' : 'n'", "dyn($S)",
	},
	kInt: {
		"size($<SL>)", "$S.size()", "$S.indexOf($S)", "$S.lastIndexOf($S)", "$S.indexOf($S, $I)", "int($D)",
		"$I${ + | - | * | / | % }$I", "math.abs($I)", "math.greatest($I, $I)", "math.least($N)",
		"math.${bitOr|bitAnd|bitXor|bitShiftLeft|bitShiftRight}($I, $I)", "-$I", "$N[$I]", "size($<AO>)",
		"lists.range($I).size()", "int($D * 2.5)", "int($S)", "$L.size()",
		"timestamp($S).${getFullYear|getHours|getDayOfWeek}()", "duration(${'90s'|'1h2m'|'-3ms'|'x'}).getSeconds()",
	},
	kDbl: {
		"$D${ + | - | * | / }$D", "double($I)", "math.${ceil|floor|round|trunc|abs|sqrt}($D)", "math.greatest($D, $D)",
		"double($S)", "$S.parseJSON().a", "$l", "$l", "$l",
	},
	kBool: {
		"$S.${startsWith|endsWith|contains}($S)", "$S.matches($R)", "$S${ == | != | < | >= }$S", "$I${ == | < | > }$I",
		"$D${ == | <= | > }$D", "$B && $B", "$B || $B", "!$B", "$S in $L", "sets.${contains|intersects|equivalent}($L, $L)",
		"header.match(${'X-Gitlab-Event'|'x-gitlab-event'|'X-None'}, $S)", "$c(LB)", "$c(AB)", hasField,
		"$S.compareSecret('token', 'gitlab-webhook')", "has($S.parseJSON().a)", "$L == $L", "$O == $O",
		"$B ? $B : $B", "$B ? $B : $B", "$B ? $B : $B", "$B ? $B : $B",
		"math.isNaN($D) || math.isInf($D)", "$S in $O", "matches($S, $R)",
	},
	kStrList: {
		"$S.split($S)", "$S.split($S, $I)", "$L.slice($I, $I)", "$L.reverse()", "$L.distinct()", "$L.sort()",
		"[$S, $S]", "$L + $L", "lists.range($I).map(i, string(i))", "$c(AL)", "$c(LL)", "$c(AS)", "[$L, $L].flatten()",
		objSubstrings, "$c(LS)",
		"$O.map(k, k).sort()", // a map's order is unspecified
		sortByReverse, "[$L, [$S]].flatten().distinct()",
	},
	kIntList: {
		"lists.range($I)", "[$I, $I]", "$N.sort()", "$L.map(x, x.size())", "lists.range(size($<AL>))", "$N.slice($I, $I)",
	},
	kObj: {
		"$S.parseJSON()", "$S.parseYAML()", "$S.parseURL()", "{$S: $S}", "$A.first()", "$l",
	},
	kObjList: {
		"$c(AA)", "$A.reverse()", "$l", "$l",
	},
}

// The productions of grammar written in Go.
const (
	hasField      = "has(OBJECT.FIELD)"
	objSubstrings = "lists.range(size(OBJLIST)).map(i, OBJLIST[i].FIELD.substring(0, $I))"
	sortByReverse = "$L.sortBy(v, v.reverse())"
)

// kindLetters are the letters of the kinds in grammar's productions, in
// kind order.
const kindLetters = "SIDBLNOA"

func letterKind(c byte) kind {
	i := strings.IndexByte(kindLetters, c)
	if i < 0 {
		panic(fmt.Sprintf("grammar: no kind %q", c))
	}
	return kind(i)
}

// expr returns an expression of kind k, at most depth calls deep.
func (g *generator) expr(s *scope, k kind, depth int) string {
	if depth <= 0 || g.r.IntN(5) == 0 {
		return g.leafOf(s, k)
	}
	d := depth - 1
	switch p := grammar[k][g.r.IntN(len(grammar[k]))]; p {
	case hasField:
		if ls := s.leaves[kObj]; len(ls) > 0 {
			l := ls[g.r.IntN(len(ls))]
			if keys := objKeys(l.val); len(keys) > 0 && l.expr != "body" {
				return "has(" + l.expr + "." + g.pick(keys) + ")"
			}
		}
		return "has(body.object_kind)"
	case objSubstrings:
		if ls := s.leaves[kObjList]; len(ls) > 0 {
			l := ls[g.r.IntN(len(ls))]
			return "lists.range(size(" + l.expr + ")).map(i, " + g.objField(l, "["+"i]", kStr) + ".substring(0, " + g.expr(s, kInt, d) + "))"
		}
		return "lists.range(" + g.expr(s, kInt, d) + ").map(i, 'x')"
	case sortByReverse:
		v := g.newVar() // named before the list's own variables
		return g.expr(s, kStrList, d) + ".sortBy(" + v + ", " + v + ".reverse())"
	default:
		return g.expand(s, k, p, d)
	}
}

// expand writes production p of kind k (see grammar), its expressions at
// most depth calls deep.
func (g *generator) expand(s *scope, k kind, p string, depth int) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '$' {
			b.WriteByte(p[i])
			continue
		}
		i++
		switch c := p[i]; c {
		case 'R':
			b.WriteString(g.pick(regexLits))
		case 'l':
			b.WriteString(g.leafOf(s, k))
		case '<': // $<XY>
			b.WriteString(g.expr(s, g.pick2(letterKind(p[i+1]), letterKind(p[i+2])), depth))
			i += 3
		case 'c': // $c(XY)
			b.WriteString(g.comprehension(s, letterKind(p[i+2]), letterKind(p[i+3]), depth))
			i += 4
		case '{': // ${a|b}
			end := i + strings.IndexByte(p[i:], '}')
			b.WriteString(g.pick(strings.Split(p[i+1:end], "|")))
			i = end
		default:
			b.WriteString(g.expr(s, letterKind(c), depth))
		}
	}
	return b.String()
}

func (g *generator) pick2(a, b kind) kind {
	if g.r.IntN(2) == 0 {
		return a
	}
	return b
}

func objKeys(v any) []string {
	m, _ := v.(map[string]any)
	var keys []string
	for k := range m {
		if identRE.MatchString(k) && !reserved[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// objField reads a field of kind k from the element of a list of objects,
// indexed by idx ("[i]"), falling back to a string field or to the id.
func (g *generator) objField(l leaf, idx string, k kind) string {
	var s scope
	s.addPaths(l.expr+idx, l.val, 1)
	if ls := s.leaves[k]; len(ls) > 0 {
		return ls[g.r.IntN(len(ls))].expr
	}
	return l.expr + idx + ".id"
}

// comprehension builds a macro over a list of kind over whose result is of
// kind out: all/exists/exists_one give bools, map and filter lists.
func (g *generator) comprehension(s *scope, over, out kind, depth int) string {
	v := g.newVar()
	var elem any
	rng := g.expr(s, over, depth)
	var inner *scope
	if over == kObjList {
		if ls := s.leaves[kObjList]; len(ls) > 0 && g.r.IntN(3) != 0 {
			l := ls[g.r.IntN(len(ls))]
			rng, elem = l.expr, l.val
		} else {
			elem = map[string]any{"id": "a"}
		}
		inner = s.with(v, elem, 2)
	} else {
		inner = s.with(v, "", 0)
	}
	switch out {
	case kBool:
		m := g.pick([]string{"all", "exists", "exists_one"})
		return rng + "." + m + "(" + v + ", " + g.expr(inner, kBool, depth) + ")"
	case kStrList:
		if g.r.IntN(2) == 0 {
			return rng + ".map(" + v + ", " + g.expr(inner, kStr, depth) + ")"
		}
		if over == kObjList {
			return rng + ".map(" + v + ", " + g.expr(inner, kStrList, depth) + ").flatten()"
		}
		return rng + ".filter(" + v + ", " + g.expr(inner, kBool, depth) + ")"
	case kStr:
		return rng + ".map(" + v + ", " + g.expr(inner, kStr, depth) + ").join(" + g.pick(strLits) + ")"
	case kObjList:
		return rng + ".filter(" + v + ", " + g.expr(inner, kBool, depth) + ")"
	}
	return rng
}

// genPayload is one webhook the generator evaluates expressions on.
type genPayload struct {
	file, event string
	body        []byte
	scope       *scope
}

// genPayloads reads the GitLab fixtures: pushes (GitLab's documented one
// and ours), a tag push, a branch created and deleted, a merge request and
// a pipeline event.
func genPayloads() ([]genPayload, error) {
	files := []struct{ file, event string }{
		{"documented_push.json", "Push Hook"},
		{"push.json", "Push Hook"},
		{"tag_push.json", "Tag Push Hook"},
		{"new_branch.json", "Push Hook"},
		{"branch_delete.json", "Push Hook"},
		{"merge_request.json", "Merge Request Hook"},
		{"pipeline.json", "Pipeline Hook"},
	}
	var out []genPayload
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("..", "..", "interceptor", "gitlab", "testdata", f.file))
		if err != nil {
			return nil, err
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", f.file, err)
		}
		s := &scope{}
		s.addPaths("body", v, 4)
		out = append(out, genPayload{file: f.file, event: f.event, body: b, scope: s})
	}
	return out, nil
}

// generate returns one random expression for p, of a random kind.
func generate(r *rand.Rand, p genPayload) string {
	g := &generator{r: r}
	k := kind(r.IntN(int(numKinds)))
	return g.expr(p.scope, k, 1+r.IntN(4))
}
