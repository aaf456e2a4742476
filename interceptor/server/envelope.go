package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf16"
	"unicode/utf8"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
)

// envelope is an InterceptorRequest read from the request's bytes without
// decoding its body: the small parts (header, interceptor_params,
// extensions, context) are decoded, while the body, a JSON string that is
// nearly the whole request, stays where it is in the request buffer until
// the token has been checked. Then body unescapes it in place, once: the
// webhook body the engine decodes is a slice of the request buffer, never a
// copy of it.
//
// Keys are matched as encoding/json matches them into
// triggersv1.InterceptorRequest (exact, else case-insensitive; unknown keys
// ignored, the last of duplicate keys wins), so the two read the same
// requests the same way (FuzzEnvelope holds this).
type envelope struct {
	header     map[string][]string
	params     map[string]any
	extensions map[string]any
	context    *triggersv1.TriggerContext

	raw     []byte // the body's JSON string between its quotes, escaped; aliases the request buffer
	escaped bool   // raw holds a backslash
	done    bool   // body was called: raw is unescaped
}

// maxEnvelopeDepth bounds the nesting of the envelope's small parts.
const maxEnvelopeDepth = 64

var errNotObject = errors.New("want a JSON object")

// parseEnvelope reads an InterceptorRequest from b. b is kept (the body
// aliases it) and later modified in place by body.
func parseEnvelope(b []byte) (*envelope, error) {
	s := scanner{b: b}
	s.space()
	if !s.is('{') {
		return nil, errNotObject
	}
	s.i++
	e := &envelope{}
	for first := true; ; first = false {
		s.space()
		if s.is('}') && first {
			s.i++
			break
		}
		ks, ke, kesc, err := s.str()
		if err != nil {
			return nil, fmt.Errorf("reading a key: %w", err)
		}
		key := b[ks:ke]
		if kesc {
			var k string
			if err := json.Unmarshal(b[ks-1:ke+1], &k); err != nil {
				return nil, fmt.Errorf("reading a key: %w", err)
			}
			key = []byte(k)
		}
		s.space()
		if !s.is(':') {
			return nil, s.errorf("want ':' after a key")
		}
		s.i++
		s.space()
		start := s.i
		if fieldIs(key, "body") {
			if err := e.readBody(&s); err != nil {
				return nil, fmt.Errorf("body: %w", err)
			}
		} else {
			if err := s.skip(0); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			if err := e.readPart(key, b[start:s.i]); err != nil {
				return nil, err
			}
		}
		s.space()
		if s.is(',') {
			s.i++
			continue
		}
		if s.is('}') {
			s.i++
			break
		}
		return nil, s.errorf("want ',' or '}' after a value")
	}
	s.space()
	if s.i != len(b) {
		return nil, s.errorf("data after the request")
	}
	return e, nil
}

// readBody records where the body's string is; null is an empty body, as
// encoding/json leaves a string untouched by null.
func (e *envelope) readBody(s *scanner) error {
	if s.literal("null") {
		return nil
	}
	if !s.is('"') {
		return s.errorf("want a JSON string")
	}
	start, end, esc, err := s.str()
	if err != nil {
		return err
	}
	e.raw, e.escaped, e.done = s.b[start:end], esc, false
	return nil
}

// readPart decodes one of the small parts; unknown keys are checked to be
// JSON and ignored.
func (e *envelope) readPart(key, v []byte) error {
	var err error
	switch {
	case fieldIs(key, "header"):
		err = json.Unmarshal(v, &e.header)
	case fieldIs(key, "extensions"):
		err = json.Unmarshal(v, &e.extensions)
	case fieldIs(key, "interceptor_params"):
		err = json.Unmarshal(v, &e.params)
	case fieldIs(key, "context"):
		err = json.Unmarshal(v, &e.context)
	default:
		if !json.Valid(v) {
			err = errors.New("not JSON")
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// fieldIs matches a key to a field as encoding/json does: exactly, else
// under Unicode simple case folding (bytes.EqualFold), as it does.
func fieldIs(key []byte, name string) bool {
	return bytes.EqualFold(key, []byte(name))
}

// body returns the webhook body: the envelope's string unescaped in place
// (the first call does it; later calls return the same slice). A body that
// is not valid UTF-8 (an EventListener never sends one: encoding/json
// escapes it) is decoded by encoding/json, which replaces bad bytes.
func (e *envelope) body() []byte {
	if e.done {
		return e.raw
	}
	e.done = true
	if !utf8.Valid(e.raw) {
		// Rare (an attacker's request): let encoding/json replace the bad
		// bytes; the scanner already checked the escapes.
		quoted := make([]byte, 0, len(e.raw)+2)
		quoted = append(append(append(quoted, '"'), e.raw...), '"')
		var s string
		_ = json.Unmarshal(quoted, &s)
		e.raw = []byte(s)
		return e.raw
	}
	if e.escaped {
		e.raw = unescapeInPlace(e.raw)
	}
	return e.raw
}

// unescapeInPlace decodes the escapes of a JSON string's contents (checked
// by scanner.str) over b itself: every escape is at least as long as what it
// stands for. Lone surrogates become U+FFFD, as encoding/json makes them.
func unescapeInPlace(b []byte) []byte {
	w := bytes.IndexByte(b, '\\')
	if w < 0 {
		return b
	}
	r := w
	for r < len(b) {
		// b[r] is a backslash.
		c := b[r+1]
		r += 2
		switch c {
		case 'b':
			b[w] = '\b'
		case 'f':
			b[w] = '\f'
		case 'n':
			b[w] = '\n'
		case 'r':
			b[w] = '\r'
		case 't':
			b[w] = '\t'
		case 'u':
			rr := hex4(b[r:])
			r += 4
			if utf16.IsSurrogate(rr) {
				rr2 := utf8.RuneError
				if r+6 <= len(b) && b[r] == '\\' && b[r+1] == 'u' {
					rr2 = hex4(b[r+2:])
				}
				if dec := utf16.DecodeRune(rr, rr2); dec != utf8.RuneError {
					rr = dec
					r += 6
				} else {
					rr = utf8.RuneError
				}
			}
			w += utf8.EncodeRune(b[w:], rr) - 1
		default: // '"', '\\', '/'
			b[w] = c
		}
		w++
		next := bytes.IndexByte(b[r:], '\\')
		if next < 0 {
			w += copy(b[w:], b[r:])
			break
		}
		w += copy(b[w:], b[r:r+next])
		r += next
	}
	return b[:w]
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// scanner walks JSON bytes. It finds where values end; what it skips is
// checked by encoding/json (small parts) or by str itself (strings).
type scanner struct {
	b []byte
	i int
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *scanner) is(c byte) bool { return s.i < len(s.b) && s.b[s.i] == c }

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) literal(lit string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		s.i += len(lit)
		return true
	}
	return false
}

// strSpecial marks the bytes str must look at: the quote, the backslash and
// control characters (not allowed raw in a JSON string).
var strSpecial = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// str reads a string at s.i (a quote): its contents are b[start:end];
// esc says whether they hold escapes, each checked to be valid JSON.
func (s *scanner) str() (start, end int, esc bool, err error) {
	if !s.is('"') {
		return 0, 0, false, s.errorf("want a JSON string")
	}
	b := s.b
	i := s.i + 1
	start = i
	for {
		for i < len(b) && !strSpecial[b[i]] {
			i++
		}
		if i >= len(b) {
			s.i = i
			return 0, 0, false, s.errorf("unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return start, i, esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				s.i = i
				return 0, 0, false, s.errorf("unterminated string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					s.i = i
					return 0, 0, false, s.errorf(`invalid \u escape`)
				}
				i += 6
			default:
				s.i = i
				return 0, 0, false, s.errorf("invalid escape %q", b[i:i+2])
			}
		default:
			s.i = i
			return 0, 0, false, s.errorf("control character %#x in a string", c)
		}
	}
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// skip moves past one value. Objects and arrays are followed by brackets,
// strings by str; other values end at a delimiter (encoding/json checks
// them afterwards).
func (s *scanner) skip(depth int) error {
	if depth > maxEnvelopeDepth {
		return s.errorf("nested deeper than %d", maxEnvelopeDepth)
	}
	if s.i >= len(s.b) {
		return s.errorf("unexpected end of the request")
	}
	switch s.b[s.i] {
	case '"':
		_, _, _, err := s.str()
		return err
	case '{', '[':
		closing := byte('}')
		if s.b[s.i] == '[' {
			closing = ']'
		}
		s.i++
		for {
			s.space()
			if s.i >= len(s.b) {
				return s.errorf("unexpected end of the request")
			}
			switch s.b[s.i] {
			case closing:
				s.i++
				return nil
			case ',', ':':
				s.i++
			case '}', ']':
				return s.errorf("mismatched %q", s.b[s.i])
			default:
				if err := s.skip(depth + 1); err != nil {
					return err
				}
			}
		}
	default:
		start := s.i
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ':', ' ', '\t', '\n', '\r', '"', '{', '[':
				if s.i == start {
					return s.errorf("unexpected %q", s.b[s.i])
				}
				return nil
			}
			s.i++
		}
		return nil
	}
}

// headerOf returns the envelope's header as an http.Header, never nil.
func headerOf(h map[string][]string) http.Header {
	if h == nil {
		return http.Header{}
	}
	return http.Header(h)
}
