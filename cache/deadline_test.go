package cache

import (
	"testing"
	"time"
)

func TestDeadlines(t *testing.T) {
	verifyNoLeaks(t)
	const timeout = 40 * time.Millisecond
	d := newDeadlines(timeout)
	defer d.close()
	var c coarseClock
	c.start(d.step, func(int64) { d.tick() })
	defer c.close()

	t.Run("BetweenTimeoutAndAQuarterMore", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			dl, ok := d.get().Deadline()
			left := time.Until(dl)
			// Never more than a quarter above timeout. Below it only when
			// the clock ticks late, which a busy test machine does: the
			// lower bound is loose so as not to test the scheduler.
			if !ok || left < timeout/2 || left > timeout*5/4 {
				t.Fatalf("deadline in %v, want within [%v, %v]", left, timeout, timeout*5/4)
			}
			time.Sleep(7 * time.Millisecond)
		}
	})

	t.Run("ExpiredContextIsReplacedOnTheSpot", func(t *testing.T) {
		d.cur.Load().cancel() // as if the process had been frozen past the deadline
		if err := d.get().Err(); err != nil {
			t.Fatalf("get returned a dead context: %v", err)
		}
	})

	t.Run("ClosedGivesCancelled", func(t *testing.T) {
		c.close()
		d.close()
		d.close()
		if d.get().Err() == nil {
			t.Fatal("after close, get returned a live context")
		}
	})
}
