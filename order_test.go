package apiperf

import (
	"encoding/hex"
	"testing"
)

func TestOrderStatus(t *testing.T) {
	all := []OrderStatus{StatusPending, StatusPaid, StatusShipped, StatusDelivered, StatusCancelled}
	allowed := map[[2]OrderStatus]bool{
		{StatusPending, StatusPaid}:      true,
		{StatusPending, StatusCancelled}: true,
		{StatusPaid, StatusShipped}:      true,
		{StatusPaid, StatusCancelled}:    true,
		{StatusShipped, StatusDelivered}: true,
	}
	for _, from := range all {
		if !from.Valid() {
			t.Errorf("%s is not Valid", from)
		}
		for _, to := range append(all, "refunded", "") {
			if got := from.CanBecome(to); got != allowed[[2]OrderStatus{from, to}] {
				t.Errorf("%s.CanBecome(%q) = %v", from, to, got)
			}
		}
	}
	for _, s := range []OrderStatus{"", "PENDING", "refunded"} {
		if s.Valid() || s.CanBecome(StatusPaid) {
			t.Errorf("%q is treated as a status", s)
		}
	}
	for _, s := range all {
		want := s == StatusPending || s == StatusPaid
		if s.HoldsStock() != want {
			t.Errorf("%s.HoldsStock() = %v", s, !want)
		}
	}
}

// TestOrderInput_Digest: the digest identifies the parsed request, and its
// form is stored with idempotency records, so it must never change.
func TestOrderInput_Digest(t *testing.T) {
	a := OrderInput{ProductID: 1, Quantity: 2}
	if a.Digest() != (OrderInput{ProductID: 1, Quantity: 2}).Digest() {
		t.Error("equal inputs digest differently")
	}
	for _, b := range []OrderInput{{ProductID: 2, Quantity: 1}, {ProductID: 12, Quantity: 1}, {ProductID: 1, Quantity: 21}} {
		if a.Digest() == b.Digest() {
			t.Errorf("%+v and %+v share a digest", a, b)
		}
	}
	// sha256("1:2"), the stored form.
	const want = "673aeeb08cfbb00b91e5e3c60b5ba31896d55b522b1be2dccb0645a59bae8775"
	if got := a.Digest(); hex.EncodeToString(got[:]) != want {
		t.Errorf("Digest of product 1, quantity 2 = %x, want %s", got, want)
	}
}
