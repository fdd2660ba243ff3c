package apiperf

import (
	"database/sql/driver"
	"fmt"
	"strconv"
)

// Money is an exact amount in integer cents. It is a decimal with two places
// in the database and a JSON number with at most two decimals on the wire, so
// 99.99 goes in and 99.99 comes out with no float anywhere in between.
type Money int64

// MaxPrice is the largest price DECIMAL(12,2) can hold, in cents.
const MaxPrice Money = 9_999_999_999_99

// MaxTotal is the largest order total DECIMAL(14,2) can hold, in cents.
const MaxTotal Money = 999_999_999_999_99

// AppendDecimal appends m as a decimal with exactly two places, e.g. "99.99" or "-0.50".
func (m Money) AppendDecimal(dst []byte) []byte {
	v := int64(m)
	if v < 0 {
		dst = append(dst, '-')
		v = -v
	}
	dst = strconv.AppendInt(dst, v/100, 10)
	c := v % 100
	return append(dst, '.', byte('0'+c/10), byte('0'+c%10))
}

// String returns m as a two-place decimal.
func (m Money) String() string { return string(m.AppendDecimal(nil)) }

// MarshalJSON writes m as a JSON number with two decimals.
func (m Money) MarshalJSON() ([]byte, error) { return m.AppendDecimal(make([]byte, 0, 16)), nil }

// Value stores m as a decimal string, which MySQL's DECIMAL columns take exactly.
func (m Money) Value() (driver.Value, error) { return m.String(), nil }

// Scan reads a DECIMAL column (MySQL returns text such as "99.99") or an
// INTEGER column holding cents (the SQLite schema stores money that way).
func (m *Money) Scan(src any) error {
	switch v := src.(type) {
	case int64:
		*m = Money(v)
		return nil
	case []byte:
		return m.parseDecimal(string(v))
	case string:
		return m.parseDecimal(v)
	}
	return fmt.Errorf("cannot scan %T into Money", src)
}

func (m *Money) parseDecimal(s string) error {
	c, reason := ParseMoney(s, true)
	if reason != "" {
		return fmt.Errorf("cannot scan %q into Money: %s", s, reason)
	}
	*m = c
	return nil
}

// ParseMoney parses a decimal number with at most two decimal places into
// cents. It returns a client-facing reason instead of an error so validation
// can report it against a field. Exponents, leading '+', NaN and infinities
// are refused; negatives are refused unless allowNegative is set.
func ParseMoney(s string, allowNegative bool) (Money, string) {
	if s == "" {
		return 0, "must be a number"
	}
	neg := false
	if s[0] == '-' {
		if !allowNegative {
			return 0, "must not be negative"
		}
		neg, s = true, s[1:]
	}
	var whole, frac int64
	i, digits := 0, 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if digits++; digits > 13 {
			return 0, "is too large"
		}
		whole = whole*10 + int64(s[i]-'0')
	}
	if digits == 0 {
		return 0, "must be a number"
	}
	places := 0
	if i < len(s) && s[i] == '.' {
		i++
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if places++; places > 2 {
				return 0, "must have at most two decimal places"
			}
			frac = frac*10 + int64(s[i]-'0')
		}
		if places == 0 {
			return 0, "must be a number"
		}
	}
	if i != len(s) {
		if s[i] == 'e' || s[i] == 'E' {
			return 0, "must be written without an exponent"
		}
		return 0, "must be a number"
	}
	for p := places; p < 2; p++ {
		frac *= 10
	}
	v := Money(whole*100 + frac)
	if neg {
		v = -v
	}
	return v, ""
}
