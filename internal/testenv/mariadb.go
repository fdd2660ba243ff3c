package testenv

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/api-perf/api-perf/internal/mariadbd"
)

// ReplicaPair is a private MariaDB primary with a GTID replica, each a
// mariadbd child process on a free loopback port with its data in a
// temporary directory (see internal/mariadbd for the controls: stopping
// the replica's SQL thread, SIGKILL and restart, SIGSTOP). Tests that kill,
// freeze or hold back the replica use it; the machine's MariaDB is left
// alone.
type ReplicaPair struct {
	*mariadbd.Pair
}

// StartReplicaPair starts a pair for tb and removes it when tb ends. It
// fails the test, rather than skip it, when mariadbd or mariadb-install-db
// is missing.
func StartReplicaPair(tb testing.TB) *ReplicaPair {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := mariadbd.StartPair(ctx)
	if err != nil {
		tb.Fatalf("a MariaDB primary and replica are required for this test: %v", err)
	}
	tb.Cleanup(p.Close)
	return &ReplicaPair{p}
}

// shared is the pair SharedReplicaPair hands out, started on first use.
var shared struct {
	once sync.Once
	pair *mariadbd.Pair
	err  error
}

// SharedReplicaPair returns the test binary's one pair, starting it on the
// first call (starting one takes seconds), healed (see Heal) for the
// caller. Tests using it must not run in parallel with each other, and the
// package's TestMain must call StopSharedReplicaPair after m.Run; if it
// cannot, the servers still die with the test binary (on Linux).
func SharedReplicaPair(tb testing.TB) *ReplicaPair {
	tb.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.pair, shared.err = mariadbd.StartPair(ctx)
	})
	if shared.err != nil {
		tb.Fatalf("a MariaDB primary and replica are required for this test: %v", shared.err)
	}
	p := &ReplicaPair{shared.pair}
	p.Heal(tb)
	return p
}

// StopSharedReplicaPair stops the pair SharedReplicaPair started, if any.
func StopSharedReplicaPair() {
	if shared.pair != nil {
		shared.pair.Close()
		shared.pair = nil
	}
}

// Heal undoes what a test may have done to the pair: a frozen replica is
// thawed, a killed one started again, a stopped SQL thread restarted, and
// the replica caught up with the primary.
func (p *ReplicaPair) Heal(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range []*mariadbd.Server{p.Primary, p.Replica} {
		if s.Running() {
			_ = s.Signal(syscall.SIGCONT)
			continue
		}
		if err := s.Start(ctx); err != nil {
			tb.Fatalf("restart the %s: %v", s.Name, err)
		}
	}
	if st, err := p.State(ctx); err == nil && st.SQLRunning != "Yes" {
		if err := p.StartSQLThread(ctx); err != nil {
			tb.Fatalf("start the replica's SQL thread: %v", err)
		}
	}
	if err := p.WaitRunning(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := p.WaitReplicated(ctx, 30*time.Second); err != nil {
		tb.Fatal(err)
	}
}

// Database creates a uniquely named database on the primary, waits until
// the replica has it, and returns DSNs for it on each server (root, with
// parseTime). It is dropped when tb ends.
func (p *ReplicaPair) Database(tb testing.TB) (primaryDSN, replicaDSN string) {
	tb.Helper()
	name := UniqueName("apiperf_test_")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.CreateDatabase(ctx, name); err != nil {
		tb.Fatalf("create database %s on the pair: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if p.Primary.Running() {
			if err := p.DropDatabase(ctx, name); err != nil {
				tb.Errorf("drop %s: %v", name, err)
			}
		}
	})
	return p.Primary.DSN(name), p.Replica.DSN(name)
}
