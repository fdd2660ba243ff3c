package mariadbd

import "syscall"

// childAttr has the kernel kill a server with SIGKILL when the thread that
// started it ends, so that a test binary that dies without cleaning up
// (a timeout's panic, a kill) leaves no mariadbd behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
