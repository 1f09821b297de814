package bench_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-dev/custos/bench"
	"github.com/custos-dev/custos/stack"
)

// BenchmarkInjection is one request through the Go data plane to an
// upstream without a credential (pass-through), with Custos signing it
// (Azure SharedKey) and with a bearer token from a file, in one run: the
// latency and requests/s injection adds.
func BenchmarkInjection(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		fmt.Fprint(w, `{"id":7}`)
	}))
	defer up.Close()
	dir := b.TempDir()
	keyFile, tokFile := filepath.Join(dir, "storage.key"), filepath.Join(dir, "token")
	if err := os.WriteFile(keyFile, []byte("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(tokFile, []byte("upstream-token"), 0o600); err != nil {
		b.Fatal(err)
	}
	for name, creds := range map[string]string{
		"pass-through": "",
		"shared-key":   "    kind: azure\n    credentials:\n      azure_shared_key: {account: devstoreaccount1, key_file: " + keyFile + ", service: blob}\n",
		"bearer-file":  "    credentials:\n      bearer: {token_file: " + tokFile + "}\n",
	} {
		b.Run(name, func(b *testing.B) {
			cfg, err := stack.CustomersConfig(up.URL+"/devstoreaccount1", creds+"audit:\n  dir: "+filepath.Join(b.TempDir(), "audit")+"\n")
			if err != nil {
				b.Fatal(err)
			}
			st, err := stack.Start(context.Background(), stack.Options{Config: cfg, NodeID: "bench-injection"})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			client := bench.NewClient(1)
			defer client.CloseIdleConnections()
			url := "http://" + st.Addr + "/customers/container/blob.json"
			ctx := context.Background()
			for range 20 {
				bench.Do(ctx, client, url)
			}
			lat := make([]time.Duration, 0, b.N)
			start := time.Now()
			for b.Loop() {
				s := bench.Do(ctx, client, url)
				if s.Err != nil {
					b.Fatal(s.Err)
				}
				lat = append(lat, s.Latency)
			}
			b.ReportMetric(float64(len(lat))/time.Since(start).Seconds(), "req/s")
			report(b, lat)
		})
	}
}
