package bench

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// Latency summarises a set of durations.
type Latency struct {
	P50  time.Duration `json:"p50"`
	P99  time.Duration `json:"p99"`
	Mean time.Duration `json:"mean"`
}

func summarise(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Latency{P50: s[len(s)/2], P99: s[min(len(s)-1, len(s)*99/100)], Mean: sum / time.Duration(len(s))}
}

// FillCost compares two ways to fill a product's cache entry right after a
// write to it committed on the primary, so that the fill cannot store the
// body from before the write:
//
//   - Primary: one primary-key SELECT on the primary (what api-perf does);
//   - GTIDWait: the primary's position (SELECT @@gtid_binlog_pos, a round
//     trip to the primary), MASTER_GTID_WAIT(position) on the replica,
//     then the SELECT on the replica.
//
// Wait is the GTIDWait fill's first two steps alone, and Added the
// difference of the two fills' means.
type FillCost struct {
	Samples  int           `json:"samples"`
	Primary  Latency       `json:"primary"`
	GTIDWait Latency       `json:"gtid_wait"`
	Wait     Latency       `json:"wait"`
	Added    time.Duration `json:"added_mean"`
}

// productSelect is the statement a fill runs, as storage prepares it.
const productSelect = "SELECT id, name, description, price, stock, version, created_at, updated_at FROM products WHERE id = ?"

// MeasureFillAfterWrite writes product id on the primary n times (an
// UPDATE that bumps its version, as a PATCH does) and fills right after
// each write, alternating the two ways, so each fill follows its own write
// at once; a fill that reads a version older than the write fails the
// measurement. Both DSNs name the same database, on a primary and on a
// MariaDB replica of it.
func MeasureFillAfterWrite(ctx context.Context, primaryDSN, replicaDSN string, id int64, n int) (FillCost, error) {
	primary, err := sql.Open("mysql", primaryDSN)
	if err != nil {
		return FillCost{}, err
	}
	defer primary.Close()
	replica, err := sql.Open("mysql", replicaDSN)
	if err != nil {
		return FillCost{}, err
	}
	defer replica.Close()
	write, err := primary.PrepareContext(ctx, "UPDATE products SET version = version + 1 WHERE id = ?")
	if err != nil {
		return FillCost{}, err
	}
	defer write.Close()
	onPrimary, err := primary.PrepareContext(ctx, productSelect)
	if err != nil {
		return FillCost{}, err
	}
	defer onPrimary.Close()
	onReplica, err := replica.PrepareContext(ctx, productSelect)
	if err != nil {
		return FillCost{}, err
	}
	defer onReplica.Close()
	wait, err := replica.PrepareContext(ctx, "SELECT MASTER_GTID_WAIT(?, 2)")
	if err != nil {
		return FillCost{}, err
	}
	defer wait.Close()

	fill := func(st *sql.Stmt) (int64, error) {
		var pid, version int64
		var name, price, stock string
		var desc sql.NullString
		var created, updated time.Time
		err := st.QueryRowContext(ctx, id).Scan(&pid, &name, &desc, &price, &stock, &version, &created, &updated)
		return version, err
	}
	var version int64
	if err := primary.QueryRowContext(ctx, "SELECT version FROM products WHERE id = ?", id).Scan(&version); err != nil {
		return FillCost{}, fmt.Errorf("product %d: %w", id, err)
	}
	var onP, onR, waits []time.Duration
	for i := range 2 * n {
		if _, err := write.ExecContext(ctx, id); err != nil {
			return FillCost{}, err
		}
		version++
		start := time.Now()
		var got int64
		if i%2 == 0 {
			if got, err = fill(onPrimary); err != nil {
				return FillCost{}, err
			}
			onP = append(onP, time.Since(start))
		} else {
			var pos string
			if err := primary.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
				return FillCost{}, err
			}
			var res int
			if err := wait.QueryRowContext(ctx, pos).Scan(&res); err != nil {
				return FillCost{}, err
			}
			if res != 0 {
				return FillCost{}, fmt.Errorf("MASTER_GTID_WAIT(%q) timed out: is the replica replicating?", pos)
			}
			waited := time.Since(start)
			if got, err = fill(onReplica); err != nil {
				return FillCost{}, err
			}
			onR, waits = append(onR, time.Since(start)), append(waits, waited)
		}
		if got != version {
			return FillCost{}, fmt.Errorf("fill %d read version %d after the write of version %d", i, got, version)
		}
	}
	c := FillCost{Samples: n, Primary: summarise(onP), GTIDWait: summarise(onR), Wait: summarise(waits)}
	c.Added = c.GTIDWait.Mean - c.Primary.Mean
	return c, nil
}
