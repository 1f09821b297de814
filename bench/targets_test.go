package bench_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/custos-dev/custos/bench"
	"github.com/custos-dev/custos/envoy/envoytest"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/names"
)

// TestEveryTargetServes sends the benchmark's request to each target
// through the harness `go run ./bench/baseline` uses: the customer comes
// back, Custos' request id only where Custos is in the path, and a short
// load at 1 and 8 callers has no error. Without Envoy the Envoy targets
// skip, except with CI=true, where they fail.
func TestEveryTargetServes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	targets, err := bench.StartTargets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := bench.NewClient(8)
	t.Cleanup(func() {
		client.CloseIdleConnections()
		targets.Close()
	})
	if len(targets.List) != 4 {
		t.Fatalf("%d targets, want 4", len(targets.List))
	}
	viaCustos := map[string]bool{bench.TargetCustosEnvoy: true, bench.TargetCustosGo: true}
	for _, tg := range targets.List {
		t.Run(tg.Name, func(t *testing.T) {
			if tg.Skipped != "" {
				envoytest.Require(t)
				t.Fatalf("skipped although Envoy is installed: %s", tg.Skipped)
			}
			resp, body := get(t, client, tg.URL)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d (%d bytes)", resp.StatusCode, len(body))
			}
			var c demo.Customer
			if err := json.Unmarshal(body, &c); err != nil || c.ID != bench.CustomerID {
				t.Fatalf("not customer %d: %v (%d bytes)", bench.CustomerID, err, len(body))
			}
			if got := resp.Header.Get(names.RequestIDHeader) != ""; got != viaCustos[tg.Name] {
				t.Errorf("%s on the response: %v, want %v", names.RequestIDHeader, got, viaCustos[tg.Name])
			}
			for _, n := range []int{1, 8} {
				res := bench.Load(ctx, client, tg.URL, n, 100*time.Millisecond)
				if res.Errors > 0 || res.Requests == 0 {
					t.Errorf("%d callers: %d requests, %d errors, the first: %s", n, res.Requests, res.Errors, res.FirstError)
				}
			}
		})
	}
}
