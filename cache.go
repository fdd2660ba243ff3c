package apiperf

import "context"

// LoadFunc loads a value that a Cache does not hold. An error whose code is
// ENOTFOUND is an absence the cache may remember for a short while, and
// return as ENOTFOUND without calling the loader again; any other error
// goes back to the callers that shared the load and is not cached.
//
// The returned slice is handed over: the cache keeps it and gives it to
// other callers, so the loader must not modify or reuse it afterwards.
// The key is the one Get was called with, so that a caller can pass one
// loader made once (a method value) rather than a closure per call, and a
// hit costs it no allocation.
type LoadFunc func(ctx context.Context, key string) ([]byte, error)

// Cache is cache-aside over opaque values: the server keeps exact response
// bodies in it. The cache package satisfies it with Redis and in process.
type Cache interface {
	// Get returns the value of key, calling load on a miss (once per
	// process, however many callers miss together). A cache that cannot
	// reach its store calls load rather than fail. The returned slice is
	// shared and must not be modified.
	Get(ctx context.Context, key string, load LoadFunc) ([]byte, error)
	// Invalidate drops keys everywhere, every replica's copy included,
	// after the write that changed them has committed.
	Invalidate(ctx context.Context, keys ...string) error
}
