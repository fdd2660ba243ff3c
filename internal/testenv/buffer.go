package testenv

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer collects output written from several goroutines (log handlers,
// child processes) and may be read while they write.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Count reports how often substr occurs in what was written so far.
func (b *Buffer) Count(substr string) int { return strings.Count(b.String(), substr) }
