package apiperf

import (
	"encoding/json"
	"math"
	"testing"
)

func TestParseMoney(t *testing.T) {
	for _, tc := range []struct {
		in       string
		negative bool
		want     Money
		reason   string
	}{
		{"0", false, 0, ""},
		{"99.99", false, 9999, ""},
		{"99.9", false, 9990, ""},
		{"0.05", false, 5, ""},
		{"12", false, 1200, ""},
		{"9999999999999.99", false, 999_999_999_999_999, ""},
		{"-0.50", true, -50, ""},
		{"-0.50", false, 0, "must not be negative"},
		{"", false, 0, "must be a number"},
		{"-", true, 0, "must be a number"},
		{".5", false, 0, "must be a number"},
		{"5.", false, 0, "must be a number"},
		{"+5", false, 0, "must be a number"},
		{"1.234", false, 0, "must have at most two decimal places"},
		{"1e3", false, 0, "must be written without an exponent"},
		{"1E3", false, 0, "must be written without an exponent"},
		{"NaN", false, 0, "must be a number"},
		{"Infinity", false, 0, "must be a number"},
		{"1 ", false, 0, "must be a number"},
		{"12345678901234", false, 0, "is too large"},
	} {
		got, reason := ParseMoney(tc.in, tc.negative)
		if got != tc.want || reason != tc.reason {
			t.Errorf("ParseMoney(%q, %v) = %d, %q; want %d, %q", tc.in, tc.negative, got, reason, tc.want, tc.reason)
		}
	}
}

// TestMoney_RoundTrip: every form Money is written in reads back as the
// same number of cents, with no float anywhere.
func TestMoney_RoundTrip(t *testing.T) {
	for _, m := range []Money{0, 1, 10, 99, 100, 9999, -1, -50, -12345, MaxPrice, MaxTotal, -MaxTotal} {
		s := m.String()
		back, reason := ParseMoney(s, true)
		if reason != "" || back != m {
			t.Errorf("%d: String %q parses back as %d (%s)", m, s, back, reason)
		}
		j, err := json.Marshal(m)
		if err != nil || string(j) != s {
			t.Errorf("%d: JSON %s (%v), want %s", m, j, err, s)
		}
		v, err := m.Value()
		if err != nil || v != s {
			t.Errorf("%d: Value %v (%v), want %s", m, v, err, s)
		}
		var scanned Money
		for _, src := range []any{s, []byte(s), int64(m)} {
			if err := scanned.Scan(src); err != nil || scanned != m {
				t.Errorf("%d: Scan(%T %v) = %d, %v", m, src, src, scanned, err)
			}
		}
	}
	if got := Money(5).String(); got != "0.05" {
		t.Errorf("Money(5) = %q, want 0.05", got)
	}
	var m Money
	if err := m.Scan(1.5); err == nil {
		t.Error("Scan accepted a float")
	}
	if err := m.Scan("1.234"); err == nil {
		t.Error("Scan accepted three decimal places")
	}
	if MaxTotal > math.MaxInt64/100 {
		t.Error("MaxTotal leaves no headroom in int64 cents")
	}
}
