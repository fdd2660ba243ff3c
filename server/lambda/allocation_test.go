//go:build !race

package lambda_test

import (
	"context"
	"testing"

	"github.com/api-perf/api-perf/server/lambda"
)

// Once the pool is warm, an invocation allocates only the response document
// it hands to the runtime.
func TestHandler_Invoke_Allocations(t *testing.T) {
	for _, ev := range benchEvents {
		t.Run(ev.name, func(t *testing.T) {
			payload := fixture(t, ev.fixture)
			h := lambda.NewHandler(smallJSON, lambda.Options{StripStage: true, StripPrefix: "/prod"})
			ctx := context.Background()
			n := testing.AllocsPerRun(200, func() {
				if _, err := h.Invoke(ctx, payload); err != nil {
					t.Fatal(err)
				}
			})
			if n > 1 {
				t.Errorf("%v allocations per invocation, want at most 1", n)
			}
		})
	}
}
