//go:build icount

package mask

import (
	"os"
	"strconv"
	"testing"
)

// TestInstructionCount masks BenchmarkMask's 64 KB document
// CUSTOS_ICOUNT_N times with the module at CUSTOS_ICOUNT_MODULE (the
// built-in one when unset), timed as the built-in module is. Run under
// valgrind --tool=callgrind by rsguest/icount.sh, twice (0 and N
// documents), it gives the instructions one document costs: a figure that,
// unlike time, does not move with a busy or throttled machine.
func TestInstructionCount(t *testing.T) {
	mod := BuiltinModule
	if path := os.Getenv("CUSTOS_ICOUNT_MODULE"); path != "" {
		var err error
		if mod, err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	n, err := strconv.Atoi(os.Getenv("CUSTOS_ICOUNT_N"))
	if err != nil {
		t.Fatalf("CUSTOS_ICOUNT_N: %v", err)
	}
	size := 64 << 10
	if v := os.Getenv("CUSTOS_ICOUNT_SIZE"); v != "" {
		if size, err = strconv.Atoi(v); err != nil {
			t.Fatalf("CUSTOS_ICOUNT_SIZE: %v", err)
		}
	}
	doc := benchDoc(size)
	// compiled once into the cache directory, so neither run compiles
	w, err := NewWASM(t.Context(), Options{Module: mod, timed: true, CacheDir: os.Getenv("CUSTOS_ICOUNT_CACHE")})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(t.Context())
	p, body := NewProfile("all"), Body{ContentType: "application/json"}
	for range n {
		s, err := w.Open(p, body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Mask(doc, true); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}
