package stack_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

func TestStartServesAndCloseStops(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		cfg, err := config.Parse([]byte(stack.LoopbackListen))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Audit.Dir = filepath.Join(t.TempDir(), "audit") // the approval store goes beside it
		st, err := stack.Start(context.Background(), stack.Options{Config: cfg, DataPlane: dp})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + st.Addr + "/anything")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d, want the catch-all 404", resp.StatusCode)
		}
		http.DefaultClient.CloseIdleConnections()
		st.Close()
		select {
		case <-st.Done():
		default:
			t.Fatal("Done not closed after Close")
		}
		if _, err := http.Get("http://" + st.Addr + "/anything"); err == nil {
			t.Fatal("the data plane still serves after Close")
		}
	})
}

// Apply returns once the data plane has taken the new configuration: the
// next request finds the new connection.
func TestApplyWaitsForTheDataPlane(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		f := stacktest.Start(t, dp, stacktest.Options{})
		cfg, err := stack.CustomersConfig(f.Upstream.URL, "  - name: second\n    upstream: "+f.Upstream.URL+"\n")
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(f.URL + "/second/3")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d right after Apply", resp.StatusCode)
		}
	})
}

func TestStartWithoutConfigFails(t *testing.T) {
	if _, err := stack.Start(context.Background(), stack.Options{}); err == nil {
		t.Fatal("started without a configuration")
	}
	cfg, _ := config.Parse([]byte(stack.LoopbackListen))
	cfg.Audit.Dir = filepath.Join(t.TempDir(), "audit")
	if _, err := stack.Start(context.Background(), stack.Options{Config: cfg, DataPlane: "nginx"}); err == nil {
		t.Fatal("started an unknown data plane")
	}
}
