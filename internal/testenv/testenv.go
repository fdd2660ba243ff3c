// Package testenv gives tests their own databases on the real services:
// a uniquely named MariaDB/MySQL database dropped at the end of the test,
// and the Redis address. A required service that does not answer fails the
// test loudly; nothing is skipped silently.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQLBase is the server DSN tests use, without a database name.
// TEST_MYSQL_DSN overrides it.
func MySQLBase() string {
	if v := os.Getenv("TEST_MYSQL_DSN"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// RedisAddr is the Redis tests use. TEST_REDIS_ADDR overrides it.
func RedisAddr() string {
	if v := os.Getenv("TEST_REDIS_ADDR"); v != "" {
		return v
	}
	return "127.0.0.1:6379"
}

// UniqueName returns prefix followed by random hex, safe as a database or key name.
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b) //nolint:errcheck // crypto/rand does not fail
	return prefix + hex.EncodeToString(b)
}

// MySQLDSN creates a fresh database and returns a DSN for it; the database
// is dropped when the test ends.
func MySQLDSN(tb testing.TB) string {
	tb.Helper()
	cfg, err := mysql.ParseDSN(MySQLBase())
	if err != nil {
		tb.Fatalf("TEST_MYSQL_DSN: %v", err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name := UniqueName("apiperf_test_")
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		tb.Fatalf("MariaDB/MySQL at %s is required for this test (start it or set TEST_MYSQL_DSN): %v", cfg.Addr, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			tb.Errorf("drop %s: %v", name, err)
		}
		admin.Close()
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

// Backends lists the databases a storage-level test runs against.
func Backends() []string {
	if v := os.Getenv("TEST_BACKENDS"); v != "" {
		return strings.Split(v, ",")
	}
	return []string{"mysql", "sqlite"}
}
