package lambda

import (
	"bytes"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// The envelope of an event is decoded by goccy/go-json into raw values; the
// few values the adapter needs (strings, objects of strings, arrays of
// strings) are then read here, straight into reused buffers, so that a header
// map of twenty entries costs no allocation at all instead of forty strings
// and a map.

// errShape reports a value whose JSON type is not the one an event has there,
// such as a header whose value is a number.
var errShape = errors.New("unexpected JSON value")

// scanner walks one JSON value that goccy/go-json has already delimited.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) skipSpace() {
	if s.i < len(s.b) && s.b[s.i] > ' ' {
		return // the usual case: the service sends compact JSON
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte that is not white space, or 0 at the end.
func (s *scanner) peek() byte {
	s.skipSpace()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// eat consumes c if it is the next byte that is not white space.
func (s *scanner) eat(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// null consumes a literal null.
func (s *scanner) null() bool {
	if s.peek() == 'n' && bytes.HasPrefix(s.b[s.i:], litNull) {
		s.i += len(litNull)
		return true
	}
	return false
}

var litNull = []byte("null")

// str reads the string at the cursor. A string without escapes is returned as
// a slice of the input; one with escapes is decoded into (*buf)[:0], so two
// strings needed at once must use two buffers.
func (s *scanner) str(buf *[]byte) ([]byte, error) {
	if !s.eat('"') {
		return nil, errShape
	}
	start := s.i
	q := bytes.IndexByte(s.b[start:], '"')
	if q < 0 {
		return nil, errShape
	}
	if e := bytes.IndexByte(s.b[start:start+q], '\\'); e >= 0 {
		s.i = start + e
		return s.unescape(start, buf)
	}
	s.i = start + q + 1
	return s.b[start : start+q], nil
}

// unescape finishes a string that has an escape, copying it into *buf.
func (s *scanner) unescape(start int, buf *[]byte) ([]byte, error) {
	out := append((*buf)[:0], s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			*buf = out
			return out, nil
		case c != '\\':
			out = append(out, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			break
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return nil, errShape
			}
			if utf16.IsSurrogate(r) {
				// A pair is two escapes in a row; a lone half becomes U+FFFD
				// as encoding/json decodes it.
				save := s.i
				r2 := utf8.RuneError
				if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					s.i += 2
					if x, ok := s.hex4(); ok {
						r2 = x
					}
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
				} else {
					r = utf8.RuneError
					s.i = save
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, errShape
		}
	}
	return nil, errShape
}

// hex4 reads the four hex digits of a \u escape.
func (s *scanner) hex4() (rune, bool) {
	if s.i+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.i : s.i+4] {
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
	s.i += 4
	return r, true
}

// jsonString decodes raw, a JSON string or null (or nothing, for an absent
// field), using buf when it has escapes.
func jsonString(raw []byte, buf *[]byte) ([]byte, error) {
	s := scanner{b: raw}
	if s.peek() == 0 || s.null() {
		return nil, nil
	}
	return s.str(buf)
}

// eachValue calls fn for every string of raw, a JSON object whose values are
// strings, arrays of strings or null. It is the one walker for headers, query
// parameters in both their single and multi-value forms: an array yields one
// call per element, so the order of the event is kept. Keys and values are
// only valid during the call.
func eachValue(raw []byte, kbuf, vbuf *[]byte, fn func(k, v []byte)) error {
	s := scanner{b: raw}
	if s.peek() == 0 || s.null() {
		return nil
	}
	if !s.eat('{') {
		return errShape
	}
	if s.eat('}') {
		return nil
	}
	for {
		k, err := s.str(kbuf)
		if err != nil {
			return err
		}
		if !s.eat(':') {
			return errShape
		}
		switch s.peek() {
		case '"':
			v, err := s.str(vbuf)
			if err != nil {
				return err
			}
			fn(k, v)
		case '[':
			if err := s.array(vbuf, func(v []byte) { fn(k, v) }); err != nil {
				return err
			}
		default:
			if !s.null() {
				return errShape
			}
		}
		if s.eat('}') {
			return nil
		}
		if !s.eat(',') {
			return errShape
		}
	}
}

// eachString calls fn for every string of raw, a JSON array of strings or null.
func eachString(raw []byte, vbuf *[]byte, fn func(v []byte)) error {
	s := scanner{b: raw}
	if s.peek() == 0 || s.null() {
		return nil
	}
	return s.array(vbuf, fn)
}

// array reads an array of strings at the cursor; null elements are skipped.
func (s *scanner) array(vbuf *[]byte, fn func(v []byte)) error {
	if !s.eat('[') {
		return errShape
	}
	if s.eat(']') {
		return nil
	}
	for {
		if !s.null() {
			v, err := s.str(vbuf)
			if err != nil {
				return err
			}
			fn(v)
		}
		if s.eat(']') {
			return nil
		}
		if !s.eat(',') {
			return errShape
		}
	}
}

// isNull reports whether raw is absent or the literal null.
func isNull(raw []byte) bool {
	s := scanner{b: raw}
	return s.peek() == 0 || s.null()
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does, so the document is always valid for the Lambda service.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
