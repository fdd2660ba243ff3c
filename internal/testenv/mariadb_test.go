package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TestReplicaPair: the pair replicates, and its controls do what they say:
// a stopped SQL thread holds changes back, a killed replica comes back on
// the same port with its data and resumes replication.
func TestReplicaPair(t *testing.T) {
	start := time.Now()
	p := StartReplicaPair(t)
	t.Logf("pair started in %v", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	primary, replica := p.Database(t)
	if _, err := p.Primary.Admin().ExecContext(ctx, "CREATE TABLE "+dbName(t, primary)+".t (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		if err := p.Replica.Admin().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+dbName(t, replica)+".t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insert := func(id int) {
		if _, err := p.Primary.Admin().ExecContext(ctx, "INSERT INTO "+dbName(t, primary)+".t VALUES (?)", id); err != nil {
			t.Fatal(err)
		}
	}
	insert(1)
	if err := p.WaitReplicated(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("replica has %d rows, want 1", n)
	}

	if err := p.StopSQLThread(ctx); err != nil {
		t.Fatal(err)
	}
	insert(2)
	time.Sleep(200 * time.Millisecond)
	if n := count(); n != 1 {
		t.Fatalf("with the SQL thread stopped the replica has %d rows, want 1", n)
	}
	if err := p.WaitReplicated(ctx, 200*time.Millisecond); err == nil {
		t.Fatal("WaitReplicated succeeded with the SQL thread stopped")
	}

	port := p.Replica.Port
	p.Replica.Kill()
	if p.Replica.Running() {
		t.Fatal("killed replica still running")
	}
	insert(3)
	start = time.Now()
	p.Heal(t) // restarts it and its SQL thread
	t.Logf("replica restarted and caught up in %v", time.Since(start).Round(time.Millisecond))
	if p.Replica.Port != port {
		t.Fatalf("replica moved from port %d to %d", port, p.Replica.Port)
	}
	if n := count(); n != 3 {
		t.Fatalf("after restart the replica has %d rows, want 3", n)
	}
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return "`" + c.DBName + "`"
}
