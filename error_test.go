package apiperf

import (
	"errors"
	"fmt"
	"testing"
)

func TestError(t *testing.T) {
	cause := errors.New("driver: connection refused")
	e := &Error{Code: EUNAVAILABLE, Message: "the database is unavailable", Err: cause}

	t.Run("CodeAndMessageThroughWraps", func(t *testing.T) {
		var err error = e
		Wrap(&err, "Product(%d)", 7)
		err = fmt.Errorf("handler: %w", err)
		if got := ErrorCode(err); got != EUNAVAILABLE {
			t.Errorf("ErrorCode = %q", got)
		}
		if got := ErrorMessage(err); got != "the database is unavailable" {
			t.Errorf("ErrorMessage = %q", got)
		}
		if !errors.Is(err, cause) {
			t.Error("the cause is lost")
		}
		if got, want := err.Error(), "handler: Product(7): unavailable: the database is unavailable: driver: connection refused"; got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
	})

	t.Run("OtherErrorsAreInternal", func(t *testing.T) {
		err := errors.New("secret detail")
		if ErrorCode(err) != EINTERNAL {
			t.Errorf("ErrorCode = %q", ErrorCode(err))
		}
		if got := ErrorMessage(err); got != "internal error" {
			t.Errorf("ErrorMessage leaks %q", got)
		}
		if ErrorCode(nil) != "" {
			t.Error("ErrorCode(nil) is not empty")
		}
		if got := ErrorMessage(&Error{Code: ENOTFOUND}); got != "internal error" {
			t.Errorf("an empty Message gives %q", got)
		}
	})

	t.Run("WrapLeavesNilAlone", func(t *testing.T) {
		var err error
		Wrap(&err, "X")
		if err != nil {
			t.Errorf("Wrap made %v of nil", err)
		}
	})

	t.Run("Errorf", func(t *testing.T) {
		e := Errorf(ENOTFOUND, "product %d does not exist", 3)
		if e.Code != ENOTFOUND || e.Message != "product 3 does not exist" || e.Error() != "not_found: product 3 does not exist" {
			t.Errorf("Errorf = %+v, %q", e, e.Error())
		}
	})
}
