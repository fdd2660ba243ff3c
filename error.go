// Package apiperf holds the domain of the products-and-orders API: its types,
// the rules that do not depend on any storage or transport, the coded error
// every layer returns, and the small interfaces the adapter packages implement.
// It imports the standard library only.
package apiperf

import (
	"errors"
	"fmt"
)

// Error codes. The server package maps each to one HTTP status; nothing else
// in the project knows about HTTP.
const (
	ECONFLICT     = "conflict"     // the request conflicts with current state (409)
	EINTERNAL     = "internal"     // a bug or an unexpected failure (500)
	EINVALID      = "invalid"      // validation failed (422)
	ENOTFOUND     = "not_found"    // no such resource (404)
	EPRECONDITION = "precondition" // If-Match did not match (412)
	EUNAVAILABLE  = "unavailable"  // a dependency is down or too slow (503)
	EUNAUTHORIZED = "unauthorized" // missing or wrong credentials (401)
	EINPROGRESS   = "in_progress"  // an idempotent request with this key is still running (409)
	EMISMATCH     = "key_mismatch" // an idempotency key reused with another body (422)
	// EPRECONDREQUIRED is a write that needs If-Match and came without it,
	// such as one that sets a product's stock to another value (428).
	EPRECONDREQUIRED = "precondition_required"
)

// FieldError names one invalid field of a request and why it is invalid.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the one error type of the domain. Code is machine-readable and
// decides the HTTP status; Message is safe to show to a client; Fields lists
// per-field validation failures; Err keeps the underlying cause for logs only.
type Error struct {
	Code    string
	Message string
	Fields  []FieldError
	Err     error
}

// Error implements the error interface. The cause is included so that a log
// line carries it; clients only ever see Message.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap exposes the cause to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted client-safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err's *Error, or a generic
// message for errors that carry none, so internal details never leak.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return "internal error"
}

// Wrap annotates *errp with the call site, keeping its code and message:
//
//	defer apiperf.Wrap(&err, "CreateOrder(product=%d)", id)
//
// An *Error keeps its code; any other error is wrapped as is.
func Wrap(errp *error, format string, args ...any) {
	if *errp == nil {
		return
	}
	*errp = fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), *errp)
}
