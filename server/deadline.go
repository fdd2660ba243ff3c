package server

import (
	"errors"
	"net"
	"os"
	"time"
)

// fasthttp moves a keep-alive connection's read deadline twice per request
// (the idle timeout before the first byte, the read timeout after it) and
// its write deadline once. Each move updates a runtime timer under a lock,
// which on the cached read path cost about 5% of the server's CPU.
//
// lazyConn makes those moves lazy. A deadline that is later than the one
// the socket already has is only recorded; the socket keeps the earlier
// one. When that earlier deadline passes during a read or write, the
// recorded deadline is armed and the call continues, so a connection is
// never cut before the deadline the server asked for. A deadline that is
// earlier than the armed one is passed on at once, so none is ever
// enforced late. In steady traffic the socket's timer is reset about once
// per timeout instead of three times per request.
//
// fasthttp calls the deadline setters and Read and Write from the one
// goroutine that serves the connection, so the fields need no lock.
type lazyConn struct {
	net.Conn
	read, write lazyDeadline
}

// lazyDeadline is one direction's deadline: want is what the server asked
// for, armed what the socket enforces.
type lazyDeadline struct {
	want, armed time.Time
}

// set records t and reports whether the socket must be given it: when t
// clears an armed deadline, or nothing is armed, or t is earlier.
func (d *lazyDeadline) set(t time.Time) bool {
	d.want = t
	if t.IsZero() {
		if d.armed.IsZero() {
			return false
		}
	} else if !d.armed.IsZero() && !t.Before(d.armed) {
		return false
	}
	d.armed = t
	return true
}

// rearm reports whether err is the armed deadline passing while a later
// one is wanted; it then makes the wanted deadline the armed one.
func (d *lazyDeadline) rearm(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) || !d.want.After(d.armed) {
		return false
	}
	d.armed = d.want
	return true
}

func (c *lazyConn) SetReadDeadline(t time.Time) error {
	if c.read.set(t) {
		return c.Conn.SetReadDeadline(t)
	}
	return nil
}

func (c *lazyConn) SetWriteDeadline(t time.Time) error {
	if c.write.set(t) {
		return c.Conn.SetWriteDeadline(t)
	}
	return nil
}

func (c *lazyConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *lazyConn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if n > 0 || err == nil || !c.read.rearm(err) {
			return n, err
		}
		if err := c.Conn.SetReadDeadline(c.read.armed); err != nil {
			return 0, err
		}
	}
}

func (c *lazyConn) Write(b []byte) (int, error) {
	written := 0
	for {
		n, err := c.Conn.Write(b[written:])
		written += n
		if err == nil || !c.write.rearm(err) {
			return written, err
		}
		if err := c.Conn.SetWriteDeadline(c.write.armed); err != nil {
			return written, err
		}
	}
}

// lingerOnClose passes the request on to the connection underneath.
func (c *lazyConn) lingerOnClose() { lingerOnClose(c.Conn) }

// lazyListener hands out lazyConns.
type lazyListener struct{ net.Listener }

func (l lazyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lazyConn{Conn: c}, nil
}
