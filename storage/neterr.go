package storage

import (
	"database/sql/driver"
	"errors"
	"net"
	"syscall"
)

// isNetError reports whether err comes from the network between the
// service and the database rather than from the database itself.
func isNetError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
