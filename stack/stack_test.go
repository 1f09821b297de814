package stack

import (
	"context"
	"net/http"
	"testing"

	"github.com/custos-dev/custos/config"
)

func TestStartServesAndCloseStops(t *testing.T) {
	cfg, err := config.Parse([]byte(LoopbackListen))
	if err != nil {
		t.Fatal(err)
	}
	st, err := Start(context.Background(), Options{Config: cfg})
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
	if _, err := http.Get("http://" + st.Addr + "/anything"); err == nil {
		t.Fatal("the data plane still serves after Close")
	}
}

func TestStartWithoutConfigFails(t *testing.T) {
	if _, err := Start(context.Background(), Options{}); err == nil {
		t.Fatal("started without a configuration")
	}
}
