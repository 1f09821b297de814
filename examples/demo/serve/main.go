// Command serve runs the demo upstream alone (the compose stack's `demo`
// service); `custos dev` starts the same handler itself.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/custos-dev/custos/examples/demo"
)

func main() {
	addr := flag.String("listen", ":8081", "address to serve the demo API on")
	flag.Parse()
	srv := &http.Server{Addr: *addr, Handler: demo.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Printf("demo upstream (synthetic data) on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}
