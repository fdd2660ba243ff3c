package bench

import (
	"context"
	"testing"
)

// TestClaimRedisDB checks two runs never share a logical database and
// that Release leaves the database empty again. It needs Redis at
// 127.0.0.1:6379 (or BENCH_REDIS_ADDR) and fails without it.
func TestClaimRedisDB(t *testing.T) {
	ctx := context.Background()
	a, err := ClaimRedisDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ClaimRedisDB(ctx)
	if err != nil {
		a.Release()
		t.Fatal(err)
	}
	if a.Index == b.Index {
		t.Errorf("both claims got database %d", a.Index)
	}
	idx := a.Index
	if err := a.Release(); err != nil {
		t.Error(err)
	}
	if err := b.Release(); err != nil {
		t.Error(err)
	}
	c, err := ClaimRedisDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	if c.Index != idx {
		t.Errorf("after Release, the highest empty database %d was not claimed again (got %d)", idx, c.Index)
	}
}
