package cache

import (
	"math"
	"sync/atomic"
	"testing"
	"time"
)

func TestCoarseClock(t *testing.T) {
	verifyNoLeaks(t)
	var ticks atomic.Int64
	var c coarseClock
	c.start(time.Millisecond, func(now int64) { ticks.Add(1) })
	start := c.coarse()
	if d := time.Duration(c.precise() - start); d < 0 || d > time.Second {
		t.Fatalf("coarse reads %v away from precise at the start", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.coarse() == start || ticks.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the clock did not move, or ran no tick, in 5s")
		}
		time.Sleep(time.Millisecond)
	}
	if c.coarse() > c.precise() {
		t.Fatal("coarse is ahead of precise")
	}
	c.close()
	c.close() // a second close is harmless
	if c.coarse() != math.MaxInt64 {
		t.Fatal("a stopped clock must make every expiry look passed")
	}
}
