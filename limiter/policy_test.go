package limiter

import (
	"strings"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

func TestParsePolicy(t *testing.T) {
	valid := []struct {
		in   string
		want apiperf.RatePolicy
	}{
		{"100/1s,burst=200", apiperf.RatePolicy{Rate: 100, Period: time.Second, Burst: 200}},
		{"20/1m", apiperf.RatePolicy{Rate: 20, Period: time.Minute, Burst: 20}},
		{"20/1s,burst=40", apiperf.RatePolicy{Rate: 20, Period: time.Second, Burst: 40}},
		{"5/s", apiperf.RatePolicy{Rate: 5, Period: time.Second, Burst: 5}},
		{"1000/h", apiperf.RatePolicy{Rate: 1000, Period: time.Hour, Burst: 1000}},
		{"10/500ms,burst=1", apiperf.RatePolicy{Rate: 10, Period: 500 * time.Millisecond, Burst: 1}},
		{" 10 / 1s , burst = 3 ", apiperf.RatePolicy{Rate: 10, Period: time.Second, Burst: 3}},
		{"10/1s,BURST=3", apiperf.RatePolicy{Rate: 10, Period: time.Second, Burst: 3}},
		{"1000000/1s", apiperf.RatePolicy{Rate: 1000000, Period: time.Second, Burst: 1000000}},
		{"1/24h", apiperf.RatePolicy{Rate: 1, Period: 24 * time.Hour, Burst: 1}},
	}
	for _, tc := range valid {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePolicy(tc.in)
			if err != nil {
				t.Fatalf("ParsePolicy(%q): %v", tc.in, err)
			}
			if p != tc.want {
				t.Fatalf("ParsePolicy(%q) = %+v, want %+v", tc.in, p, tc.want)
			}
		})
	}

	for _, in := range []string{"off", "OFF", " Off "} {
		t.Run("Off/"+in, func(t *testing.T) {
			p, err := ParsePolicy(in)
			if err != nil || p != (apiperf.RatePolicy{}) {
				t.Fatalf("ParsePolicy(%q) = %+v, %v; want the zero policy (no limit)", in, p, err)
			}
		})
	}

	bad := []struct{ in, msg string }{
		{"", "empty"},
		{"100", "RATE/PERIOD"},
		{"abc/1s", "rate"},
		{"0/1s", "rate"},
		{"-5/1s", "rate"},
		{"1.5/1s", "rate"},
		{"10/", "period"},
		{"10/1", "period"},
		{"10/0s", "period"},
		{"10/-1s", "period"},
		{"10/1x", "period"},
		{"10/48h", "period"},
		{"10/1s,burst=0", "burst"},
		{"10/1s,burst=x", "burst"},
		{"10/1s,burst=", "burst"},
		{"10/1s,burst=5,burst=6", "twice"},
		{"10/1s,cost=2", "unknown option"},
		{"10/1s,", "unknown option"},
		{"10/1s,burst", "unknown option"},
		{"2000000/1ms", "too high"},
		{"10000000000/1s", "rate"},
		{"on", "RATE/PERIOD"},
	}
	for _, tc := range bad {
		t.Run("Bad/"+tc.in, func(t *testing.T) {
			p, err := ParsePolicy(tc.in)
			if err == nil {
				t.Fatalf("ParsePolicy(%q) = %+v; want an error", tc.in, p)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ParsePolicy(%q) error %q does not mention %q", tc.in, err, tc.msg)
			}
		})
	}
}
