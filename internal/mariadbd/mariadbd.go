// Package mariadbd runs private MariaDB servers for tests and benchmarks: a
// primary and a GTID replica of it, each a mariadbd child process on a
// loopback port of its own with its data in a temporary directory, and the
// controls a failure test needs (stop the replica's SQL thread, SIGKILL a
// server and start it again on the same port and data). internal/testenv
// wraps it for tests; bench/cmd/compare uses it directly.
//
// Only the Debian packages' binaries are needed (mariadb-server-core and
// mariadb-client-core): /usr/sbin/mariadbd and mariadb-install-db.
package mariadbd

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/api-perf/api-perf/internal/procsignal"
)

// Binaries are the programs a server needs, found on PATH or in the
// directories Debian installs them to.
type Binaries struct {
	Server, InstallDB string
}

// FindBinaries locates mariadbd and mariadb-install-db, or says which is
// missing and how to install it.
func FindBinaries() (Binaries, error) {
	var b Binaries
	var missing []string
	for _, want := range []struct {
		dst   *string
		names []string
	}{
		{&b.Server, []string{"mariadbd", "/usr/sbin/mariadbd", "/usr/libexec/mariadbd"}},
		{&b.InstallDB, []string{"mariadb-install-db", "/usr/bin/mariadb-install-db", "mysql_install_db"}},
	} {
		for _, n := range want.names {
			if p, err := exec.LookPath(n); err == nil {
				*want.dst = p
				break
			}
		}
		if *want.dst == "" {
			missing = append(missing, want.names[0])
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("%v not found: apt-get install mariadb-server-core mariadb-client-core (scripts/services.sh does)", missing)
	}
	return b, nil
}

// tuning makes a throw-away server start and write quickly: small buffers,
// and no fsync (a SIGKILL keeps what the kernel holds; only a machine crash
// would lose it, and then the test is lost anyway).
var tuning = []string{
	"--innodb-buffer-pool-size=32M",
	"--innodb-log-file-size=16M",
	"--innodb-flush-log-at-trx-commit=2",
	"--innodb-doublewrite=0",
	"--innodb-flush-method=nosync",
	"--skip-name-resolve",
	"--max-connections=500",
}

// install creates an empty data directory with mariadb-install-db: root
// may log in over TCP without a password, and there is no test database.
func install(ctx context.Context, bins Binaries, datadir string) error {
	args := []string{"--no-defaults", "--datadir=" + datadir, "--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	cmd := exec.CommandContext(ctx, bins.InstallDB, append(args, tuning...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mariadb-install-db: %v\n%s", err, tail(out, 2000))
	}
	return nil
}

// Server is one mariadbd process with its data directory. It is not
// running between Kill and Start.
type Server struct {
	// Name is "primary" or "replica", for messages.
	Name string
	// Port is the server's TCP port on 127.0.0.1; it stays the same
	// across Kill and Start.
	Port int
	// Dir holds the data directory, the socket, the PID file and the log.
	Dir string

	bin  string
	args []string
	// admin is a small root pool, without a default database.
	admin *sql.DB

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the running process has exited
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// DSN is a go-sql-driver DSN for database db as root (empty db: none).
func (s *Server) DSN(db string) string {
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr, c.DBName = "root", "tcp", s.Addr(), db
	c.ParseTime = true
	return c.FormatDSN()
}

// Admin is a root connection pool to the server, without a default
// database. It reconnects by itself after Kill and Start.
func (s *Server) Admin() *sql.DB { return s.admin }

// Log is the tail of the server's error log, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "error.log"))
	return string(tail(b, 3000))
}

// newServer prepares (without starting) a server on a free port whose data
// directory is dir/data.
func newServer(name, dir string, bins Binaries, serverID int, extra ...string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Name: name, Port: port, Dir: dir, bin: bins.Server}
	s.args = append([]string{
		"--no-defaults",
		"--datadir=" + filepath.Join(dir, "data"),
		"--socket=" + filepath.Join(dir, "mysqld.sock"),
		"--pid-file=" + filepath.Join(dir, "mysqld.pid"),
		"--log-error=" + filepath.Join(dir, "error.log"),
		"--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--server-id=" + strconv.Itoa(serverID),
		"--log-bin=mariadb-bin",
		"--gtid-strict-mode=1",
	}, tuning...)
	if os.Geteuid() == 0 {
		s.args = append(s.args, "--user=root")
	}
	s.args = append(s.args, extra...)
	s.admin, err = sql.Open("mysql", s.DSN(""))
	if err != nil {
		return nil, err
	}
	s.admin.SetMaxOpenConns(4)
	s.admin.SetConnMaxIdleTime(10 * time.Second)
	return s, nil
}

// Start runs the server (again, on the same port and data) and waits until
// it accepts connections. InnoDB recovers after a Kill on its own.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return fmt.Errorf("%s: already running", s.Name)
	}
	cmd := exec.Command(s.bin, s.args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = childAttr()
	// The child is killed if the thread that started it ends (see
	// childAttr); pinning the goroutine to its thread while starting makes
	// that thread the runtime's, which only ends with the process.
	runtime.LockOSThread()
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() {
		cmd.Wait() //nolint:errcheck // the exit is noticed through done
		close(done)
	}()

	deadline := time.Now().Add(60 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.admin.PingContext(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("%s exited while starting: %s\n%s", s.Name, out.String(), s.Log())
		case <-ctx.Done():
			s.Kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("%s did not accept connections on %s within 60s: %v\n%s", s.Name, s.Addr(), err, s.Log())
		}
	}
}

// Kill stops the server at once with SIGKILL (a crash, not a shutdown) and
// waits until it has exited. It does nothing when the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Signal sends sig to the running server: SIGSTOP freezes it (a hung
// server: connections open, nothing answers), SIGCONT thaws it.
func (s *Server) Signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("%s is not running", s.Name)
	}
	return procsignal.Signal(s.cmd.Process, sig)
}

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Status reads a global status counter, such as Com_select: how many
// SELECT statements the server has run since it started.
func (s *Server) Status(ctx context.Context, name string) (int64, error) {
	for _, c := range name {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return 0, fmt.Errorf("status variable %q: letters and underscores only", name)
		}
	}
	// SHOW takes no placeholders; name is checked above.
	var n string
	var v int64
	err := s.admin.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&n, &v)
	return v, err
}

// Pair is a primary and a replica that replicates everything from it with
// GTIDs (MASTER_USE_GTID=slave_pos), each with binary logging and strict
// GTID mode, as a managed replica runs.
type Pair struct {
	Primary, Replica *Server
	dir              string
}

// StartPair installs one data directory, copies it for the replica, starts
// both servers and replication, and waits until the replica's threads run.
// Everything lives under a new directory in os.TempDir(); Close removes it.
func StartPair(ctx context.Context) (_ *Pair, err error) {
	bins, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	// A short path: the socket's must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "mariadb-pair-")
	if err != nil {
		return nil, err
	}
	p := &Pair{dir: dir}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	pdir, rdir := filepath.Join(dir, "primary"), filepath.Join(dir, "replica")
	if err := install(ctx, bins, filepath.Join(pdir, "data")); err != nil {
		return nil, err
	}
	// MariaDB keeps no server identity in the data directory (the server
	// id is an option), so a copy of a fresh install is a second server.
	if out, err := exec.CommandContext(ctx, "cp", "-a", pdir, rdir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy the data directory: %v: %s", err, out)
	}
	if p.Primary, err = newServer("primary", pdir, bins, 1); err != nil {
		return nil, err
	}
	if p.Replica, err = newServer("replica", rdir, bins, 2, "--read-only=1", "--relay-log=relay-bin"); err != nil {
		return nil, err
	}
	errs := make(chan error, 2)
	for _, s := range []*Server{p.Primary, p.Replica} {
		go func() { errs <- s.Start(ctx) }()
	}
	if err := errors.Join(<-errs, <-errs); err != nil {
		return nil, err
	}
	// The copy's binary log position is empty, as is the primary's: the
	// replica starts from the primary's first event.
	_, err = p.Replica.admin.ExecContext(ctx, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, "+
		"MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1", p.Primary.Port))
	if err != nil {
		return nil, fmt.Errorf("CHANGE MASTER TO: %w", err)
	}
	if _, err := p.Replica.admin.ExecContext(ctx, "START SLAVE"); err != nil {
		return nil, fmt.Errorf("START SLAVE: %w", err)
	}
	if err := p.WaitRunning(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Close kills both servers and removes their files.
func (p *Pair) Close() {
	for _, s := range []*Server{p.Primary, p.Replica} {
		if s != nil {
			s.Kill()
			s.admin.Close()
		}
	}
	os.RemoveAll(p.dir)
}

// ReplicaState is what SHOW SLAVE STATUS says about the replica's threads.
type ReplicaState struct {
	IORunning, SQLRunning string
	LastIOError           string
	LastSQLError          string
}

// State reads the replica's SHOW SLAVE STATUS.
func (p *Pair) State(ctx context.Context) (ReplicaState, error) {
	rows, err := p.Replica.admin.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return ReplicaState{}, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return ReplicaState{}, err
	}
	if !rows.Next() {
		return ReplicaState{}, errors.New("SHOW SLAVE STATUS: replication is not configured")
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return ReplicaState{}, err
	}
	var st ReplicaState
	for i, c := range cols {
		switch c {
		case "Slave_IO_Running":
			st.IORunning = vals[i].String
		case "Slave_SQL_Running":
			st.SQLRunning = vals[i].String
		case "Last_IO_Error":
			st.LastIOError = vals[i].String
		case "Last_SQL_Error":
			st.LastSQLError = vals[i].String
		}
	}
	return st, rows.Err()
}

// WaitRunning waits until both replication threads run (after START SLAVE,
// or after the replica restarts, which resumes replication by itself).
func (p *Pair) WaitRunning(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := p.State(ctx)
		if err == nil && st.IORunning == "Yes" && st.SQLRunning == "Yes" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replication did not start within 30s: %+v, %v\n%s", st, err, p.Replica.Log())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitReplicated waits until the replica has applied everything the primary
// had written when it was called (MASTER_GTID_WAIT on the primary's
// @@gtid_binlog_pos).
func (p *Pair) WaitReplicated(ctx context.Context, timeout time.Duration) error {
	var pos string
	if err := p.Primary.admin.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		return fmt.Errorf("read the primary's position: %w", err)
	}
	var res int
	err := p.Replica.admin.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", pos, timeout.Seconds()).Scan(&res)
	if err != nil {
		return fmt.Errorf("MASTER_GTID_WAIT(%q): %w", pos, err)
	}
	if res != 0 {
		st, _ := p.State(ctx)
		return fmt.Errorf("the replica did not reach %q within %v: %+v", pos, timeout, st)
	}
	return nil
}

// StopSQLThread stops applying replicated events (the replica keeps
// receiving them): from now on it falls behind, as a replica stuck on a
// long statement does.
func (p *Pair) StopSQLThread(ctx context.Context) error {
	_, err := p.Replica.admin.ExecContext(ctx, "STOP SLAVE SQL_THREAD")
	return err
}

// StartSQLThread resumes applying replicated events.
func (p *Pair) StartSQLThread(ctx context.Context) error {
	_, err := p.Replica.admin.ExecContext(ctx, "START SLAVE SQL_THREAD")
	return err
}

// CreateDatabase creates database name on the primary and waits until the
// replica has it too.
func (p *Pair) CreateDatabase(ctx context.Context, name string) error {
	if _, err := p.Primary.admin.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		return err
	}
	return p.WaitReplicated(ctx, 30*time.Second)
}

// DropDatabase drops database name on the primary (and so on the replica).
func (p *Pair) DropDatabase(ctx context.Context, name string) error {
	_, err := p.Primary.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`")
	return err
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
