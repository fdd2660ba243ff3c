package storage

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// dialect holds what differs between MySQL and SQLite. Statements are
// written once with {now}, {ago:N}, {expires}, {forupdate} and {forshare}
// placeholders and expanded per dialect; the few that cannot be written
// once carry one SQL text per dialect.
type dialect struct {
	name string
	// now is the current UTC time as the database writes it.
	now string
	// agoFmt is now minus %s seconds, in the same representation.
	agoFmt string
	// laterFmt is now plus %s seconds, in the same representation.
	laterFmt string
	// forUpdate locks selected rows in a transaction (SQLite locks the whole
	// database for an immediate transaction, so it needs nothing).
	forUpdate string
	// forShare makes a read wait for any transaction that holds the rows it
	// reads, and read them as committed (SQLite readers see the last commit).
	forShare string
	// money converts cents into the value the price columns take.
	money func(apiperf.Money) any
}

var mysqlDialect = &dialect{
	name:      "mysql",
	now:       "CURRENT_TIMESTAMP(6)",
	agoFmt:    "(CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND)",
	laterFmt:  "(CURRENT_TIMESTAMP(6) + INTERVAL %s SECOND)",
	forUpdate: " FOR UPDATE",
	forShare:  " LOCK IN SHARE MODE",
	money:     func(m apiperf.Money) any { return m.String() },
}

var sqliteDialect = &dialect{
	name:      "sqlite",
	now:       "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
	agoFmt:    "strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now', '-%s seconds')",
	laterFmt:  "strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now', '+%s seconds')",
	forUpdate: "",
	forShare:  "",
	money:     func(m apiperf.Money) any { return int64(m) },
}

// expand fills a statement's placeholders for this dialect. {expires} is
// when an idempotency record written now expires.
func (d *dialect) expand(q string) string {
	ttl := strconv.Itoa(int(apiperf.IdempotencyTTL / time.Second))
	q = strings.ReplaceAll(q, "{expires}", fmt.Sprintf(d.laterFmt, ttl))
	q = strings.ReplaceAll(q, "{now}", d.now)
	q = strings.ReplaceAll(q, "{forupdate}", d.forUpdate)
	q = strings.ReplaceAll(q, "{forshare}", d.forShare)
	for {
		i := strings.Index(q, "{ago:")
		if i < 0 {
			return q
		}
		j := strings.IndexByte(q[i:], '}') + i
		q = q[:i] + fmt.Sprintf(d.agoFmt, q[i+5:j]) + q[j+1:]
	}
}
