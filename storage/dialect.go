package storage

import (
	"strings"

	apiperf "github.com/api-perf/api-perf"
)

// dialect holds what differs between MySQL and SQLite. Statements are
// written once with {now}, {ago:N} and {forupdate} placeholders and
// expanded per dialect.
type dialect struct {
	name string
	// now is the current UTC time as the database writes it.
	now string
	// agoFmt is now minus %s seconds, in the same representation.
	agoFmt string
	// forUpdate locks selected rows in a transaction (SQLite locks the whole
	// database for an immediate transaction, so it needs nothing).
	forUpdate string
	// money converts cents into the value the price columns take.
	money func(apiperf.Money) any
}

var mysqlDialect = &dialect{
	name:      "mysql",
	now:       "CURRENT_TIMESTAMP(6)",
	agoFmt:    "(CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND)",
	forUpdate: " FOR UPDATE",
	money:     func(m apiperf.Money) any { return m.String() },
}

var sqliteDialect = &dialect{
	name:      "sqlite",
	now:       "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
	agoFmt:    "strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now', '-%s seconds')",
	forUpdate: "",
	money:     func(m apiperf.Money) any { return int64(m) },
}

// expand fills a statement's placeholders for this dialect.
func (d *dialect) expand(q string) string {
	q = strings.ReplaceAll(q, "{now}", d.now)
	q = strings.ReplaceAll(q, "{forupdate}", d.forUpdate)
	for {
		i := strings.Index(q, "{ago:")
		if i < 0 {
			return q
		}
		j := strings.IndexByte(q[i:], '}') + i
		q = q[:i] + strings.Replace(d.agoFmt, "%s", q[i+5:j], 1) + q[j+1:]
	}
}
