//go:build !linux

package bench

import (
	"errors"
	"os/exec"
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, sig) //nolint:errcheck // the group may already be gone
	}
}

func cpuTime(int) (time.Duration, error) {
	return 0, errors.New("process CPU time is read from /proc, which only Linux has")
}
