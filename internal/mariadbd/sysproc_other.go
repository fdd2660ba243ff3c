//go:build !linux

package mariadbd

import "syscall"

// childAttr sets nothing outside Linux, which has no parent-death signal:
// Close must run for the servers to stop.
func childAttr() *syscall.SysProcAttr { return nil }
