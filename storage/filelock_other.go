//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package storage

import (
	"context"
	"sync"
)

// fileLocks holds one mutex per lock path.
var fileLocks sync.Map

// lockFile, where flock is missing, excludes the pools of this process
// only: the embedded SQLite mode serves from one process, and the image and
// Lambda builds run on Linux, which takes the flock variant.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	mu, _ := fileLocks.LoadOrStore(path, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock, nil
}
