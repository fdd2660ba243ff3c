package apiperf

import (
	"testing"
	"time"
)

func TestRatePolicy_Interval(t *testing.T) {
	for _, tc := range []struct {
		p    RatePolicy
		want time.Duration
	}{
		{RatePolicy{Rate: 100, Period: time.Second, Burst: 200}, 10 * time.Millisecond},
		{RatePolicy{Rate: 3, Period: time.Second, Burst: 3}, 333334 * time.Microsecond}, // rounded up, never looser
		{RatePolicy{Rate: 1, Period: 24 * time.Hour, Burst: 1}, 24 * time.Hour},
		{RatePolicy{Rate: 1_000_000, Period: time.Second, Burst: 1}, time.Microsecond},
		{RatePolicy{}, 0},
		{RatePolicy{Rate: 1, Period: -time.Second}, 0},
	} {
		if got := tc.p.Interval(); got != tc.want {
			t.Errorf("%+v.Interval() = %v, want %v", tc.p, got, tc.want)
		}
	}
}
