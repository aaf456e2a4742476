// Package pathglob matches repository paths against GitHub Actions path-filter
// patterns ("Filter pattern cheat sheet" of GitHub's workflow syntax).
//
// Syntax, matched against the whole path, which starts at the repository root
// (no leading "/"):
//
//	token  meaning
//	*      zero or more characters except "/"
//	**     zero or more of any character, "/" included; "**/" at the start
//	       of a segment also matches zero segments, so "**/README.md"
//	       matches "README.md" and "docs/**/*.md" matches "docs/a.md"
//	?      zero or one of the preceding character or [...] class
//	       ("*.jsx?" matches "page.js" and "page.jsx")
//	+      one or more of the preceding character or [...] class
//	[...]  one character listed or in a range; ranges stay within a-z,
//	       A-Z or 0-9 ("[CB]at", "[1-2]00", "v[0-9]+")
//	\c     the character c literally ("\*", "\?", "\[", "\\")
//	!      first character only: the pattern excludes what it matches
//
// "?" is GitHub's quantifier, not the shell's single-character wildcard: it
// makes the preceding character optional. A "?" or "+" with nothing to
// quantify (at the start, after "*", "**" or another quantifier) is a syntax
// error, as are negated classes ("[!a]", "[^a]"), empty classes, ranges such
// as "a-Z", a "/" inside a class, an unfinished escape, a leading "/", and
// patterns longer than MaxPatternLength bytes. Every other character,
// including "]", "{", "}" and ".", stands for itself. Matching is
// case-sensitive and works on Unicode code points; a byte that is not valid
// UTF-8 is matched only by "*" and "**".
//
// A List applies patterns in order: a path is included when the last pattern
// that matches it is positive, so a later "!" pattern excludes and a later
// positive pattern re-includes. A list with no matching pattern, or only
// negative patterns, includes nothing.
//
// Patterns compile to a small non-deterministic automaton simulated in
// lockstep (no backtracking): matching takes time linear in the path length
// times the pattern length, whatever the input.
package pathglob

import (
	"context"
	"fmt"
	"math/bits"
	"strings"
	"unicode/utf8"
)

// MaxPatternLength is the longest pattern, in bytes, that Compile accepts.
const MaxPatternLength = 1024

// SyntaxError reports a pattern that cannot be compiled.
type SyntaxError struct {
	Pattern string // the pattern as given
	Offset  int    // byte offset in Pattern of the offending character
	Msg     string // what is wrong
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid path pattern %q: %s (at offset %d)", e.Pattern, e.Msg, e.Offset)
}

type atomKind uint8

const (
	atomLit      atomKind = iota // one given rune
	atomClass                    // one rune of a [...] class
	atomNotSlash                 // any rune but '/' (from *)
	atomAny                      // any rune (from **)
	atomEpsilon                  // matches nothing: a branch point with empty transitions
)

type quantifier uint8

const (
	qOne  quantifier = iota // exactly once
	qOpt                    // zero or once (?)
	qMany                   // zero or more times (*, **, and the tail of +)
)

// token is one step of the automaton: an atom with a quantifier. Position i
// of the automaton is "before token i"; position len(tokens) accepts.
type token struct {
	atom  atomKind
	q     quantifier
	r     rune
	class []runeRange
	// skip, when non-zero, is an extra empty transition from this position
	// to position skip: "**/" may match no segment at all.
	skip int
	// group marks the "/" that closes a "**/" group: it cannot be quantified.
	group bool
}

type runeRange struct{ lo, hi rune }

func (t *token) matches(r rune, valid bool) bool {
	switch t.atom {
	case atomEpsilon:
		return false
	case atomAny:
		return true
	case atomNotSlash:
		return r != '/'
	case atomLit:
		return valid && r == t.r
	default:
		if !valid {
			return false
		}
		for _, rr := range t.class {
			if r >= rr.lo && r <= rr.hi {
				return true
			}
		}
		return false
	}
}

// middleKind selects how the part of the pattern between its literal prefix
// and literal suffix is matched.
type middleKind uint8

const (
	midEmpty    middleKind = iota // nothing: the middle must be empty
	midAnything                   // "**": anything
	midNoSlash                    // "*": anything without '/'
	midNFA                        // the automaton
)

// Pattern is one compiled path pattern. It is immutable and safe for
// concurrent use.
type Pattern struct {
	text    string
	negated bool

	prefix, suffix string
	// required is a literal the middle must contain: a quick rejection
	// before running the automaton.
	required string
	kind     middleKind
	toks     []token
	// closure[i] is the set of positions reachable from position i through
	// empty transitions (i included); single[i] says it is {i} alone.
	closure [][]uint64
	single  []bool
	words   int
}

// Compile parses a pattern. A leading "!" makes it a negative pattern, which
// only has a meaning inside a List; Match ignores it.
func Compile(pattern string) (*Pattern, error) {
	p := &Pattern{text: pattern}
	if len(pattern) > MaxPatternLength {
		return nil, &SyntaxError{Pattern: pattern, Offset: MaxPatternLength, Msg: fmt.Sprintf("longer than %d bytes", MaxPatternLength)}
	}
	if !utf8.ValidString(pattern) {
		return nil, &SyntaxError{Pattern: pattern, Offset: invalidOffset(pattern), Msg: "not valid UTF-8"}
	}
	body := pattern
	start := 0
	if strings.HasPrefix(body, "!") {
		p.negated = true
		body = body[1:]
		start = 1
	}
	if body == "" {
		return nil, &SyntaxError{Pattern: pattern, Offset: start, Msg: "empty pattern"}
	}
	if body[0] == '/' {
		return nil, &SyntaxError{Pattern: pattern, Offset: start, Msg: "paths are relative to the repository root: remove the leading /"}
	}
	toks, err := parse(pattern, start)
	if err != nil {
		return nil, err
	}
	p.layout(toks)
	return p, nil
}

// MustCompile is Compile for patterns known to be valid; it panics on error.
func MustCompile(pattern string) *Pattern {
	p, err := Compile(pattern)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the pattern as given to Compile.
func (p *Pattern) String() string { return p.text }

// Negated reports whether the pattern starts with "!".
func (p *Pattern) Negated() bool { return p.negated }

func invalidOffset(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return i
			}
		}
	}
	return 0
}

// parse turns the pattern (from byte offset start) into tokens.
func parse(pattern string, start int) ([]token, error) {
	var toks []token
	fail := func(off int, msg string) error {
		return &SyntaxError{Pattern: pattern, Offset: off, Msg: msg}
	}
	// quantifiable reports whether the last token may take ? or +.
	quantifiable := func() bool {
		if len(toks) == 0 {
			return false
		}
		t := toks[len(toks)-1]
		return t.q == qOne && !t.group && (t.atom == atomLit || t.atom == atomClass)
	}
	i := start
	for i < len(pattern) {
		c := pattern[i]
		switch c {
		case '\\':
			if i+1 >= len(pattern) {
				return nil, fail(i, `unfinished escape: "\" must be followed by the character to match`)
			}
			r, size := utf8.DecodeRuneInString(pattern[i+1:])
			toks = append(toks, token{atom: atomLit, r: r})
			i += 1 + size
		case '*':
			j := i
			for j < len(pattern) && pattern[j] == '*' {
				j++
			}
			if j-i == 1 {
				toks = append(toks, token{atom: atomNotSlash, q: qMany})
				i = j
				continue
			}
			segmentStart := i == start || pattern[i-1] == '/'
			if segmentStart && j < len(pattern) && pattern[j] == '/' {
				// "**/" matches zero or more whole segments: a branch
				// that either skips the group or enters ".*/".
				at := len(toks)
				toks = append(toks,
					token{atom: atomEpsilon, q: qOpt, skip: at + 3},
					token{atom: atomAny, q: qMany},
					token{atom: atomLit, r: '/', group: true})
				i = j + 1
				continue
			}
			toks = append(toks, token{atom: atomAny, q: qMany})
			i = j
		case '?', '+':
			if !quantifiable() {
				return nil, fail(i, fmt.Sprintf("%q must follow a character or a [...] class", c))
			}
			last := &toks[len(toks)-1]
			if c == '?' {
				last.q = qOpt
			} else {
				more := *last
				more.q = qMany
				toks = append(toks, more)
			}
			i++
		case '[':
			t, next, err := parseClass(pattern, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, t)
			i = next
		default:
			r, size := utf8.DecodeRuneInString(pattern[i:])
			toks = append(toks, token{atom: atomLit, r: r})
			i += size
		}
	}
	return toks, nil
}

// parseClass parses the [...] class starting at pattern[open] == '['.
func parseClass(pattern string, open int) (token, int, error) {
	fail := func(off int, msg string) error {
		return &SyntaxError{Pattern: pattern, Offset: off, Msg: msg}
	}
	var members []rune // literal members, in order, ranges folded later
	var offsets []int
	var escaped []bool
	i := open + 1
	for {
		if i >= len(pattern) {
			return token{}, 0, fail(open, "unclosed [")
		}
		r, size := utf8.DecodeRuneInString(pattern[i:])
		if r == ']' {
			break
		}
		if r == '\\' {
			if i+size >= len(pattern) {
				return token{}, 0, fail(i, `unfinished escape: "\" must be followed by the character to match`)
			}
			r2, size2 := utf8.DecodeRuneInString(pattern[i+size:])
			members, offsets, escaped = append(members, r2), append(offsets, i), append(escaped, true)
			i += size + size2
			continue
		}
		if (r == '!' || r == '^') && i == open+1 {
			return token{}, 0, fail(i, "negated classes are not supported: list the characters to match")
		}
		if r == '/' {
			return token{}, 0, fail(i, `a [...] class cannot match "/"`)
		}
		members, offsets, escaped = append(members, r), append(offsets, i), append(escaped, false)
		i += size
	}
	closeAt := i
	if len(members) == 0 {
		return token{}, 0, fail(open, "empty class []")
	}
	var ranges []runeRange
	afterRange := false
	for k := 0; k < len(members); k++ {
		isDash := members[k] == '-' && !escaped[k]
		if isDash && k > 0 && k < len(members)-1 && !afterRange {
			// A range lo-hi; lo was appended as a single member already.
			lo, hi := members[k-1], members[k+1]
			if !rangeOK(lo, hi) {
				return token{}, 0, fail(offsets[k-1], fmt.Sprintf("invalid range %c-%c: ranges must stay within a-z, A-Z or 0-9 and go upwards", lo, hi))
			}
			ranges[len(ranges)-1] = runeRange{lo, hi}
			k++
			afterRange = true
			continue
		}
		afterRange = false
		ranges = append(ranges, runeRange{members[k], members[k]})
	}
	return token{atom: atomClass, class: ranges}, closeAt + 1, nil
}

func rangeOK(lo, hi rune) bool {
	if lo > hi {
		return false
	}
	in := func(a, b rune) bool { return lo >= a && hi <= b }
	return in('a', 'z') || in('A', 'Z') || in('0', '9')
}

// layout splits the tokens into a literal prefix, a literal suffix and the
// middle automaton, and picks the cheapest way to match the middle.
func (p *Pattern) layout(toks []token) {
	plain := func(t token) bool { return t.atom == atomLit && t.q == qOne && t.skip == 0 }
	start := 0
	var b strings.Builder
	for start < len(toks) && plain(toks[start]) {
		b.WriteRune(toks[start].r)
		start++
	}
	p.prefix = b.String()
	// The suffix may not begin before a position some skip jumps to.
	minEnd := start
	for _, t := range toks[start:] {
		if t.skip > minEnd {
			minEnd = t.skip
		}
	}
	end := len(toks)
	for end > minEnd && plain(toks[end-1]) {
		end--
	}
	b.Reset()
	for _, t := range toks[end:] {
		b.WriteRune(t.r)
	}
	p.suffix = b.String()
	mid := append([]token(nil), toks[start:end]...)
	for k := range mid {
		if mid[k].skip != 0 {
			mid[k].skip -= start
		}
	}
	switch {
	case len(mid) == 0:
		p.kind = midEmpty
		return
	case len(mid) == 1 && mid[0].atom == atomAny && mid[0].skip == 0:
		p.kind = midAnything
		return
	case len(mid) == 1 && mid[0].atom == atomNotSlash:
		p.kind = midNoSlash
		return
	}
	p.kind = midNFA
	p.toks = mid
	var run strings.Builder
	for k := 0; k <= len(mid); k++ {
		if k < len(mid) && mid[k].atom == atomLit && mid[k].q == qOne && !mid[k].group {
			run.WriteRune(mid[k].r)
			continue
		}
		if run.Len() > len(p.required) {
			p.required = run.String()
		}
		run.Reset()
	}
	n := len(mid)
	p.words = (n + 1 + 63) / 64
	p.closure = make([][]uint64, n+1)
	p.single = make([]bool, n+1)
	// Empty transitions only go forward, so closures build backwards.
	for i := n; i >= 0; i-- {
		c := make([]uint64, p.words)
		c[i/64] |= 1 << (i % 64)
		single := true
		if i < n {
			t := mid[i]
			if t.q != qOne {
				orInto(c, p.closure[i+1])
				single = false
			}
			if t.skip != 0 {
				orInto(c, p.closure[t.skip])
				single = false
			}
		}
		p.closure[i] = c
		p.single[i] = single
	}
}

func orInto(dst, src []uint64) {
	for k := range dst {
		dst[k] |= src[k]
	}
}

// Match reports whether path matches the pattern. A leading "!" is ignored
// here: negation only has a meaning in a List.
func (p *Pattern) Match(path string) bool {
	ok, _ := p.match(nil, path)
	return ok
}

// MatchContext is Match that stops when ctx is done, checked every few
// thousand automaton steps: a long path against a long pattern costs up to
// len(path) × Tokens() steps, which a deadline must be able to cut. The
// error is ctx's.
func (p *Pattern) MatchContext(ctx context.Context, path string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return p.match(ctx, path)
}

// Tokens is the size of the pattern's automaton: matching a path of n
// characters takes at most n × Tokens() steps. Patterns matched by their
// literal prefix and suffix alone count 1.
func (p *Pattern) Tokens() int {
	if p.kind != midNFA {
		return 1
	}
	return len(p.toks)
}

// checkSteps is how many automaton steps run between two looks at the
// context: about 10-50 µs of work.
const checkSteps = 1 << 14

func (p *Pattern) match(ctx context.Context, path string) (bool, error) {
	if len(path) < len(p.prefix)+len(p.suffix) ||
		!strings.HasPrefix(path, p.prefix) || !strings.HasSuffix(path, p.suffix) {
		return false, nil
	}
	mid := path[len(p.prefix) : len(path)-len(p.suffix)]
	switch p.kind {
	case midEmpty:
		return mid == "", nil
	case midAnything:
		return true, nil
	case midNoSlash:
		return strings.IndexByte(mid, '/') < 0, nil
	}
	if p.required != "" && !strings.Contains(mid, p.required) {
		return false, nil
	}
	// Runes between two looks at ctx; never zero.
	every := max(1, checkSteps/len(p.toks))
	if ctx == nil {
		every = -1
	}
	if p.words == 1 {
		return p.run1(ctx, mid, every)
	}
	return p.runN(ctx, mid, every)
}

// run1 simulates an automaton whose positions fit in one word. It looks
// at ctx every `every` runes (never when every < 0).
func (p *Pattern) run1(ctx context.Context, s string, every int) (bool, error) {
	n := len(p.toks)
	cur := p.closure[0][0]
	left := every
	for i := 0; i < len(s); {
		if left--; left == 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			left = every
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		valid := r != utf8.RuneError || size > 1
		i += size
		var next uint64
		for set := cur &^ (1 << n); set != 0; set &= set - 1 {
			k := bits.TrailingZeros64(set)
			t := &p.toks[k]
			if !t.matches(r, valid) {
				continue
			}
			to := k + 1
			if t.q == qMany {
				to = k
			}
			next |= p.closure[to][0]
		}
		if next == 0 {
			return false, nil
		}
		cur = next
	}
	return cur&(1<<n) != 0, nil
}

// runN simulates an automaton of any size, looking at ctx as run1 does.
func (p *Pattern) runN(ctx context.Context, s string, every int) (bool, error) {
	n := len(p.toks)
	cur := make([]uint64, p.words)
	next := make([]uint64, p.words)
	copy(cur, p.closure[0])
	left := every
	for i := 0; i < len(s); {
		if left--; left == 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			left = every
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		valid := r != utf8.RuneError || size > 1
		i += size
		clear(next)
		moved := false
		for w, word := range cur {
			for set := word; set != 0; set &= set - 1 {
				k := w*64 + bits.TrailingZeros64(set)
				if k >= n {
					continue
				}
				t := &p.toks[k]
				if !t.matches(r, valid) {
					continue
				}
				to := k + 1
				if t.q == qMany {
					to = k
				}
				if p.single[to] {
					next[to/64] |= 1 << (to % 64)
				} else {
					orInto(next, p.closure[to])
				}
				moved = true
			}
		}
		if !moved {
			return false, nil
		}
		cur, next = next, cur
	}
	return cur[n/64]&(1<<(n%64)) != 0, nil
}
