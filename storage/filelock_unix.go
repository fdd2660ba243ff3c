//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// lockFile takes an exclusive flock on path, creating the file, and waits
// for it until ctx ends. flock belongs to the open file, so two pools in one
// process exclude each other as two processes do; the kernel drops it when
// the holder dies. SQLite's own locks are fcntl locks on the database
// file, which a separate lock file leaves alone.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing the file releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("migration lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "timed out waiting for the migration lock", Err: ctx.Err()}
		case <-time.After(20 * time.Millisecond):
		}
	}
}
