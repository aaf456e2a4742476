package gitlab

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// This file holds the JSON reader behind Decode: one pass over the bytes
// that checks the limits (nesting depth, UTF-8) while it builds exactly the
// value encoding/json.Unmarshal builds for a map[string]any target:
// map[string]any objects, []any arrays, float64 numbers, string, bool and
// nil. Where encoding/json is lenient we are strict, and say so in the error:
// invalid UTF-8 (encoding/json silently substitutes U+FFFD) and nesting past
// the configured depth. Everything else — duplicate keys (the last wins),
// escaped lone surrogates (U+FFFD), numbers outside float64's range (an
// error) — follows encoding/json, and FuzzDecode checks the two agree.
//
// Why not encoding/json itself: it scans the input twice (validation, then
// decoding), cannot report invalid UTF-8, and allocates every string; here
// the body is copied into one string (or, when the caller guarantees the
// bytes are never written again, WithSharedBody, viewed as one without a
// copy) and every string without escapes, object keys included, is a
// substring of it.

// syntaxError is a JSON syntax or limit error at a byte offset.
type syntaxError struct {
	msg    string
	offset int
	line   int
	col    int
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte offset %d (line %d, column %d): %s", e.offset, e.line, e.col, e.msg)
}

// jsonParser reads one JSON value from src.
type jsonParser struct {
	src      string
	pos      int
	depth    int
	maxDepth int

	// Pending object members and array elements of every open container,
	// as stacks: a container's own items start at the mark it took when it
	// opened, so each map and slice is allocated once, at its final size.
	members []member
	elems   []any
	buf     []byte // unescaping scratch

	// pend holds the string elements of every open array, as a stack like
	// elems (whose entries are pendingString for them): an array of many
	// strings boxes them from one block of its own when it closes, so the
	// typed event can share that block (sharedStrings) instead of copying
	// the list.
	pend []string
	// blocks records each such block: its first string and its length.
	blocks stringBlocks

	// strs holds the strings of string values, several to an allocation
	// (box); a full block stays with the values that point into it.
	strs  strBlock
	nums  numBlock  // the same for numbers
	lists listBlock // and for arrays' slice headers
	// objects holds the objects' members and the Objects (object.go).
	objects objectArena

	// maxSize is the largest string (bytes in the input, at least its
	// characters), array (elements) or object (members) read so far.
	maxSize int
}

// strBlockSize and numBlockSize are how many string and number values
// share one allocation.
const (
	strBlockSize  = 32
	numBlockSize  = 16
	listBlockSize = 16
)

// box returns s as an any without allocating for each string: the value
// points into a block of strings that is never written again once a value
// points into it. The interface holds a string exactly as any(s) would.
func (p *jsonParser) box(s string) any { return p.strs.box(s, strBlockSize) }

func (p *jsonParser) noteSize(n int) {
	if n > p.maxSize {
		p.maxSize = n
	}
}

// pendingString stands in p.elems for a string element kept in p.pend
// until its array closes.
type pendingString struct{}

// minArrayBlock is the number of string elements from which an array boxes
// them from a block of its own; smaller arrays use the shared blocks.
const minArrayBlock = 8

type member struct {
	key string
	val any
}

var parserPool = sync.Pool{New: func() any { return new(jsonParser) }}

// maxPooledItems bounds the scratch a pooled parser keeps.
const maxPooledItems = 4096

// parseJSON parses data as one JSON value followed only by whitespace,
// into the values encoding/json gives (objects as maps).
func parseJSON(data []byte, maxDepth int) (any, error) {
	v, _, err := parseJSONSized(data, maxDepth, false)
	return Plain(v), err
}

// stringBlocks records the blocks long arrays of strings were boxed from
// (jsonParser.pend): the address of a block's first string, and its length.
type stringBlocks map[*string]int

// parseJSONSized is parseJSON that also returns the size of the largest
// string, array or object of the value (see jsonParser.maxSize). With
// shared, the strings of the value point into data itself, which the caller
// must never write again (WithSharedBody); otherwise into one copy of it.
func parseJSONSized(data []byte, maxDepth int, shared bool) (any, int, error) {
	v, size, _, err := parseJSONBlocks(data, maxDepth, shared)
	return v, size, err
}

// parseJSONBlocks is parseJSONSized that also returns the blocks of the
// value's long arrays of strings, for sharedStrings.
func parseJSONBlocks(data []byte, maxDepth int, shared bool) (any, int, stringBlocks, error) {
	p := parserPool.Get().(*jsonParser)
	defer func() {
		// Containers clear their items as they close; after an error some
		// are left. Drop every reference into this body, and scratch grown
		// by an unusually large one, before pooling.
		clear(p.members)
		clear(p.elems)
		clear(p.pend)
		p.members, p.elems, p.pend, p.src, p.strs, p.nums, p.lists, p.objects, p.blocks = p.members[:0], p.elems[:0], p.pend[:0], "", strBlock{}, numBlock{}, listBlock{}, objectArena{}, nil
		if cap(p.members) > maxPooledItems {
			p.members = nil
		}
		if cap(p.elems) > maxPooledItems {
			p.elems = nil
		}
		if cap(p.pend) > maxPooledItems {
			p.pend = nil
		}
		if cap(p.buf) > maxPooledItems*16 {
			p.buf = nil
		}
		parserPool.Put(p)
	}()
	if shared && len(data) > 0 {
		p.src = unsafe.String(&data[0], len(data))
	} else {
		p.src = string(data)
	}
	p.pos, p.depth, p.maxDepth, p.maxSize = 0, 0, maxDepth, 0
	p.strs, p.nums, p.lists = strBlock{}, numBlock{}, listBlock{} // blocks belong to the values of the parse that filled them
	p.objects = objectArena{hint: min(max(len(data)/40, 16), 1024)}

	p.skipSpace()
	if p.pos == len(p.src) {
		return nil, 0, nil, p.errorAt(p.pos, "empty input, want a JSON value")
	}
	v, err := p.value()
	if err != nil {
		return nil, 0, nil, err
	}
	p.skipSpace()
	if p.pos != len(p.src) {
		return nil, 0, nil, p.errorAt(p.pos, "unexpected %s after the top-level value", p.describe(p.pos))
	}
	return v, p.maxSize, p.blocks, nil
}

// errorAt builds a syntaxError at offset off, with its line and column.
func (p *jsonParser) errorAt(off int, format string, args ...any) error {
	line := 1 + strings.Count(p.src[:off], "\n")
	col := off + 1
	if i := strings.LastIndexByte(p.src[:off], '\n'); i >= 0 {
		col = off - i
	}
	return &syntaxError{msg: fmt.Sprintf(format, args...), offset: off, line: line, col: col}
}

// describe names the input at off for an error message.
func (p *jsonParser) describe(off int) string {
	if off >= len(p.src) {
		return "end of input"
	}
	c := p.src[off]
	if c >= 0x20 && c < utf8.RuneSelf {
		return fmt.Sprintf("character %q", rune(c))
	}
	if r, size := utf8.DecodeRuneInString(p.src[off:]); r != utf8.RuneError || size > 1 {
		return fmt.Sprintf("character %U", r)
	}
	return fmt.Sprintf("byte 0x%02X", c)
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value parses the value starting at p.pos (no leading whitespace).
func (p *jsonParser) value() (any, error) {
	if p.pos >= len(p.src) {
		return nil, p.errorAt(p.pos, "unexpected end of input, want a value")
	}
	switch c := p.src[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return p.box(s), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	default:
		return nil, p.errorAt(p.pos, "unexpected %s, want a value", p.describe(p.pos))
	}
}

func (p *jsonParser) literal(word string) error {
	end := p.pos + len(word)
	if end > len(p.src) || p.src[p.pos:end] != word {
		i := p.pos
		for i < len(p.src) && i < end && p.src[i] == word[i-p.pos] {
			i++
		}
		return p.errorAt(i, "unexpected %s in literal %s", p.describe(i), word)
	}
	p.pos = end
	return nil
}

func (p *jsonParser) enter() error {
	p.depth++
	if p.depth > p.maxDepth {
		return p.errorAt(p.pos, "nested deeper than %d levels (WithMaxDepth raises the limit)", p.maxDepth)
	}
	return nil
}

// open enters the container whose opening byte is at p.pos and reports
// whether it closes at once with end (it is then left too).
func (p *jsonParser) open(end byte) (empty bool, err error) {
	if err := p.enter(); err != nil {
		return false, err
	}
	p.pos++ // '{' or '['
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == end {
		p.pos++
		p.depth--
		return true, nil
	}
	return false, nil
}

func (p *jsonParser) object() (any, error) {
	if empty, err := p.open('}'); err != nil || empty {
		if err != nil {
			return nil, err
		}
		return p.objects.object(nil), nil
	}
	mark := len(p.members)
	for {
		if p.pos >= len(p.src) || p.src[p.pos] != '"' {
			return nil, p.errorAt(p.pos, "unexpected %s, want a string object key", p.describe(p.pos))
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.src) || p.src[p.pos] != ':' {
			return nil, p.errorAt(p.pos, "unexpected %s after object key, want ':'", p.describe(p.pos))
		}
		p.pos++
		p.skipSpace()
		val, err := p.value()
		if err != nil {
			return nil, err
		}
		p.members = append(p.members, member{key: key, val: val})
		if more, err := p.next('}', "object member"); err != nil {
			return nil, err
		} else if !more {
			break
		}
	}
	items := p.members[mark:]
	p.noteSize(len(items))
	o := p.objects.object(items)
	clear(items)
	p.members = p.members[:mark]
	p.depth--
	return o, nil
}

// next reads what follows a member or element of a container closed by
// end: a comma (more follows) or end (the container is done).
func (p *jsonParser) next(end byte, after string) (more bool, err error) {
	p.skipSpace()
	if p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
			return true, nil
		case end:
			p.pos++
			return false, nil
		}
	}
	return false, p.errorAt(p.pos, "unexpected %s after %s, want ',' or '%c'", p.describe(p.pos), after, end)
}

func (p *jsonParser) array() (any, error) {
	if empty, err := p.open(']'); err != nil || empty {
		if err != nil {
			return nil, err
		}
		return p.lists.box([]any{}, listBlockSize), nil
	}
	mark, smark := len(p.elems), len(p.pend)
	for {
		var val any
		if p.pos < len(p.src) && p.src[p.pos] == '"' {
			s, err := p.str()
			if err != nil {
				return nil, err
			}
			p.pend = append(p.pend, s)
			val = pendingString{}
		} else {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			val = v
		}
		p.elems = append(p.elems, val)
		if more, err := p.next(']', "array element"); err != nil {
			return nil, err
		} else if !more {
			break
		}
	}
	items := p.elems[mark:]
	p.noteSize(len(items))
	a := make([]any, len(items))
	if strs := p.pend[smark:]; len(strs) > 0 {
		var block []string
		if len(strs) >= minArrayBlock {
			block = make([]string, len(strs))
			copy(block, strs)
			if p.blocks == nil {
				p.blocks = stringBlocks{}
			}
			p.blocks[&block[0]] = len(block)
		}
		j := 0
		for i, it := range items {
			if _, ok := it.(pendingString); !ok {
				a[i] = it
				continue
			}
			if block != nil {
				a[i] = stringAt(&block[j])
			} else {
				a[i] = p.box(strs[j])
			}
			j++
		}
		clear(strs)
		p.pend = p.pend[:smark]
	} else {
		copy(a, items)
	}
	clear(items)
	p.elems = p.elems[:mark]
	p.depth--
	return p.lists.box(a, listBlockSize), nil
}

// plainRun skips the plain bytes of s from i eight at a time, and returns
// where the first word holding a byte that is not plain (see plain) starts:
// a string's bytes are mostly plain ASCII, and testing a word at once is
// about three times faster than the table on GitLab's URLs, SHAs and
// messages.
func plainRun(s string, i int) int {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	b := unsafe.Slice(unsafe.StringData(s), len(s)) // read only
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		quote, backslash := x^(lsb*'"'), x^(lsb*'\\')
		// A byte that is 0 in quote or backslash, below 0x20, or 0x80 and
		// over (the high bit, which also covers the borrows of the
		// subtractions) makes the word special.
		if ((quote-lsb)&^quote|(backslash-lsb)&^backslash|(x-lsb*0x20)&^x|x)&msb != 0 {
			return i
		}
	}
	return i
}

// plain marks the bytes a string can hold as they are: not the closing
// quote, not a backslash, not a control character, not the first byte of a
// multi-byte UTF-8 sequence (those are validated separately).
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str parses the string starting at p.pos (the opening quote).
func (p *jsonParser) str() (string, error) {
	start := p.pos + 1
	i := start
	for {
		i = plainRun(p.src, i)
		for i < len(p.src) && plain[p.src[i]] {
			i++
		}
		if i >= len(p.src) {
			return "", p.errorAt(i, "unexpected end of input in the string that starts at byte offset %d", start-1)
		}
		switch c := p.src[i]; {
		case c == '"':
			p.pos = i + 1
			p.noteSize(i - start)
			return p.src[start:i], nil
		case c == '\\':
			return p.escaped(start, i)
		case c < 0x20:
			return "", p.errorAt(i, "control character %U in a string (it must be escaped)", rune(c))
		default:
			r, size := utf8.DecodeRuneInString(p.src[i:])
			if r == utf8.RuneError && size == 1 {
				return "", p.errorAt(i, "invalid UTF-8 (byte 0x%02X) in a string", c)
			}
			i += size
		}
	}
}

// escaped finishes a string that has escapes: src[start:i] is its plain
// prefix and src[i] the first backslash.
func (p *jsonParser) escaped(start, i int) (string, error) {
	buf := append(p.buf[:0], p.src[start:i]...)
	defer func() { p.buf = buf }()
	for i < len(p.src) {
		c := p.src[i]
		switch {
		case c == '"':
			p.pos = i + 1
			p.noteSize(i - start) // the escaped form is at least as long
			return string(buf), nil
		case c == '\\':
			if i+1 >= len(p.src) {
				return "", p.errorAt(i+1, "unexpected end of input in an escape sequence")
			}
			switch e := p.src[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := hex4(p.src, i+2)
				if !ok {
					return "", p.errorAt(i, "invalid \\u escape, want four hexadecimal digits")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// A surrogate must pair with the escape that follows it;
					// a lone one becomes U+FFFD, as in encoding/json.
					r2 := rune(-1)
					if i+1 < len(p.src) && p.src[i] == '\\' && p.src[i+1] == 'u' {
						if v, ok := hex4(p.src, i+2); ok {
							r2 = v
						}
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				buf = utf8.AppendRune(buf, r)
				continue
			default:
				return "", p.errorAt(i, "invalid escape sequence \\%s", p.describeEscape(i+1))
			}
			i += 2
		case c < 0x20:
			return "", p.errorAt(i, "control character %U in a string (it must be escaped)", rune(c))
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(p.src[i:])
			if r == utf8.RuneError && size == 1 {
				return "", p.errorAt(i, "invalid UTF-8 (byte 0x%02X) in a string", c)
			}
			buf = append(buf, p.src[i:i+size]...)
			i += size
		}
	}
	return "", p.errorAt(i, "unexpected end of input in the string that starts at byte offset %d", start-1)
}

func (p *jsonParser) describeEscape(off int) string {
	c := p.src[off]
	if c >= 0x20 && c < utf8.RuneSelf {
		return string(c)
	}
	return fmt.Sprintf("followed by byte 0x%02X", c)
}

// hex4 decodes the four hexadecimal digits at s[i:i+4].
func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number parses a JSON number into a float64, as encoding/json does.
func (p *jsonParser) number() (any, error) {
	f, err := p.float()
	if err != nil {
		return nil, err
	}
	return p.nums.box(f, numBlockSize), nil
}

// float parses the number starting at p.pos.
func (p *jsonParser) float() (float64, error) {
	s := p.src
	start := p.pos
	i := start
	neg := s[i] == '-'
	if neg {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return 0, p.errorAt(i, "unexpected %s in a number, want a digit", p.describe(i))
	}
	intEnd := i
	integer := true
	if i < len(s) && s[i] == '.' {
		integer = false
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return 0, p.errorAt(i, "unexpected %s after the decimal point, want a digit", p.describe(i))
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		integer = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return 0, p.errorAt(i, "unexpected %s in an exponent, want a digit", p.describe(i))
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	p.pos = i
	digits := s[start:intEnd]
	if neg {
		digits = digits[1:]
	}
	if integer && len(digits) <= 15 {
		// Exact in a float64 (< 2^53): skip strconv.
		var n int64
		for _, c := range []byte(digits) {
			n = n*10 + int64(c-'0')
		}
		f := float64(n)
		if neg {
			f = -f
		}
		return f, nil
	}
	f, err := strconv.ParseFloat(s[start:i], 64)
	if err != nil {
		lit := s[start:i]
		if len(lit) > 40 {
			lit = lit[:20] + "..." + lit[len(lit)-16:]
		}
		return 0, p.errorAt(start, "number %s does not fit in a 64-bit float", lit)
	}
	return f, nil
}
