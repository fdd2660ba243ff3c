package bench

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts the child in its own process group and asks the kernel
// to kill it when the harness's thread dies, so an interrupted run leaves
// no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, sig) //nolint:errcheck // the group may already be gone
	}
}
