// Command serve runs the warehouse demo upstream alone: SQL over HTTP
// (POST /query {"query": "…"}) to an in-memory SQLite database of
// synthetic customers. `custos dev` can serve the same handler itself.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/custos-dev/custos/examples/warehouse"
)

func main() {
	addr := flag.String("listen", ":8082", "address to serve the warehouse API on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := warehouse.Handler()
	defer w.Close()
	srv := &http.Server{Addr: *addr, Handler: w, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut) //nolint:errcheck // exiting either way
	}()
	log.Printf("warehouse upstream (SQLite, synthetic data) on %s: POST /query {\"query\": \"SELECT …\"}", *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
