package lambda

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// The scanner must read every string exactly as encoding/json does.
func TestJSONString(t *testing.T) {
	for _, raw := range []string{
		`""`, `"plain"`, `"\"\\\/\b\f\n\r\t"`, `"\u0000\u001f\u00e9\u20ac"`, `"\ud83d\ude00"`,
		`"lone \ud800 high"`, `"lone \udc00 low"`, `"\ud800\u0041"`, `"\ud800\ud800\udc00"`, `"héllo"`,
		`"tail\\"`, `"\uD83D\uDE00 upper hex"`,
	} {
		var want string
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		var buf []byte
		got, err := jsonString([]byte(raw), &buf)
		if err != nil {
			t.Errorf("jsonString(%s): %v", raw, err)
			continue
		}
		if string(got) != want {
			t.Errorf("jsonString(%s) = %q, want %q", raw, got, want)
		}
	}
	for _, raw := range []string{`"open`, `"bad \x escape"`, `"\u12"`, `"\u12zz"`, `7`, `{}`} {
		var buf []byte
		if got, err := jsonString([]byte(raw), &buf); err == nil {
			t.Errorf("jsonString(%s) = %q, nil; want an error", raw, got)
		}
	}
}

// Every string appendString writes must decode back to itself, invalid
// UTF-8 excepted, which becomes U+FFFD as encoding/json writes it.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "\x00\x1f\x7f", "é€😀", "\xff\xfe", "\u2028\u2029", "<&>"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		out := appendString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("appendString(%q) = %s: %v", s, out, err)
		}
		want, _ := json.Marshal(string(s))
		var std string
		_ = json.Unmarshal(want, &std)
		if got != std {
			t.Fatalf("appendString(%q) decodes to %q, encoding/json to %q", s, got, std)
		}
		if utf8.Valid(s) && got != string(s) {
			t.Fatalf("appendString(%q) decodes to %q", s, got)
		}
	})
}

// Every string encoding/json writes must be read back by the scanner.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\"", "é😀", "\x00\n", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		raw, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(raw, &want)
		var buf []byte
		got, err := jsonString(raw, &buf)
		if err != nil || string(got) != want {
			t.Fatalf("jsonString(%s) = %q, %v; want %q", raw, got, err, want)
		}
	})
}
