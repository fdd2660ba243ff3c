package limiter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// maxPeriod keeps policies within what a person would configure; longer
// periods are almost certainly a typo (a missing unit or an extra digit).
const maxPeriod = 24 * time.Hour

// ParsePolicy parses the configuration syntax of a policy:
// "RATE/PERIOD[,burst=N]", for example "100/1s,burst=200" or "20/1m", or
// "off", which gives the zero policy (no limit). PERIOD is a Go duration
// ("1s", "500ms", "1m"); a bare unit ("s", "m", "h") means one of it.
// Burst defaults to Rate. The returned policy has no Name: the caller names
// it. Error messages describe the value only, so that the caller can prefix
// the name of the variable it came from.
func ParsePolicy(s string) (apiperf.RatePolicy, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		return apiperf.RatePolicy{}, nil
	}
	if s == "" {
		return apiperf.RatePolicy{}, errors.New(`empty rate limit policy: want RATE/PERIOD[,burst=N] or "off"`)
	}
	head, opts, more := strings.Cut(s, ",")
	rateStr, periodStr, ok := strings.Cut(head, "/")
	if !ok {
		return apiperf.RatePolicy{}, fmt.Errorf("rate limit policy %q: want RATE/PERIOD[,burst=N], e.g. 100/1s,burst=200", s)
	}
	rate, err := positiveInt(strings.TrimSpace(rateStr))
	if err != nil {
		return apiperf.RatePolicy{}, fmt.Errorf("rate limit policy %q: rate: %v", s, err)
	}
	period, err := parsePeriod(strings.TrimSpace(periodStr))
	if err != nil {
		return apiperf.RatePolicy{}, fmt.Errorf("rate limit policy %q: period: %v", s, err)
	}
	p := apiperf.RatePolicy{Rate: rate, Period: period, Burst: rate}
	sawBurst := false
	for more {
		var opt string
		opt, opts, more = strings.Cut(opts, ",")
		name, value, ok := strings.Cut(strings.TrimSpace(opt), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "burst") {
			return apiperf.RatePolicy{}, fmt.Errorf("rate limit policy %q: unknown option %q (only burst=N is supported)", s, strings.TrimSpace(opt))
		}
		if sawBurst {
			return apiperf.RatePolicy{}, fmt.Errorf("rate limit policy %q: burst given twice", s)
		}
		sawBurst = true
		if p.Burst, err = positiveInt(strings.TrimSpace(value)); err != nil {
			return apiperf.RatePolicy{}, fmt.Errorf("rate limit policy %q: burst: %v", s, err)
		}
	}
	if _, err := interval(&p, 1); err != nil {
		return apiperf.RatePolicy{}, fmt.Errorf("rate limit policy %q: rate too high for its period or burst too large", s)
	}
	return p, nil
}

// positiveInt parses a decimal integer between 1 and one billion.
func positiveInt(s string) (int, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	if n < 1 || n > 1e9 {
		return 0, fmt.Errorf("%d is out of range 1..1000000000", n)
	}
	return int(n), nil
}

// parsePeriod parses a Go duration, or a bare unit meaning one of it.
func parsePeriod(s string) (time.Duration, error) {
	switch s {
	case "ms", "s", "m", "h":
		s = "1" + s
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 1s or 1m", s)
	}
	if d < time.Millisecond || d > maxPeriod {
		return 0, fmt.Errorf("%s is out of range 1ms..24h", d)
	}
	return d, nil
}
