// Package procsignal sends SIGSTOP and SIGCONT to a test's child server
// and waits until they have taken effect.
//
// kill(2) only queues a signal: a server that is running on the other core
// can answer one more query after SIGSTOP returns, and a test that then
// counts the reads the "hung" server refused counts one short. Signal
// returns only once every thread of the process is stopped (after
// SIGSTOP) or none is (after SIGCONT), as /proc reports them.
package procsignal

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// settle bounds the wait for a signal to take effect; a process that has
// not stopped by then is stuck somewhere no test can reason about.
const settle = 10 * time.Second

// Signal sends sig to p; for SIGSTOP and SIGCONT it waits until every
// thread of p is stopped, or none is. Other signals return at once. Where
// /proc is missing it returns after sending.
func Signal(p *os.Process, sig os.Signal) error {
	if err := p.Signal(sig); err != nil {
		return err
	}
	var wantStopped bool
	switch sig {
	case syscall.SIGSTOP:
		wantStopped = true
	case syscall.SIGCONT:
		wantStopped = false
	default:
		return nil
	}
	deadline := time.Now().Add(settle)
	for {
		stopped, running, err := threadStates(p.Pid)
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if (wantStopped && running == 0) || (!wantStopped && stopped == 0) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("procsignal: pid %d still has %d stopped and %d running threads %v after %v",
				p.Pid, stopped, running, sig, settle)
		}
		time.Sleep(time.Millisecond)
	}
}

// threadStates counts p's threads in the stopped state (T) and in any
// other state. A thread that exits while it is counted is skipped.
func threadStates(pid int) (stopped, other int, err error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	if len(tasks) == 0 {
		return 0, 0, os.ErrNotExist
	}
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// The state follows the command name, which is in parentheses
		// and may itself hold spaces or parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			continue
		}
		switch s[i+2] {
		case 'T', 't':
			stopped++
		case 'Z', 'X':
			// A zombie thread neither answers nor blocks a stop.
		default:
			other++
		}
	}
	return stopped, other, nil
}
