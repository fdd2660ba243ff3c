package bench

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestCPUTime burns CPU in this process and checks /proc agrees with
// getrusage, to the clock tick's resolution.
func TestCPUTime(t *testing.T) {
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ruBefore := rusage()
	for x := 0; rusage()-ruBefore < 200*time.Millisecond; x++ {
	}
	ruUsed := rusage() - ruBefore
	after, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if used := after - before; used < ruUsed-50*time.Millisecond || used > ruUsed+50*time.Millisecond {
		t.Errorf("/proc shows %v of CPU, getrusage %v", used, ruUsed)
	}
	if _, err := cpuTime(1 << 30); err == nil {
		t.Error("want an error for a process that does not exist")
	}
}
