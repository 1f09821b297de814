package audit

import (
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// The frontier must store the same hashes as tlog, in tlog's order, and give
// tlog's tree hash at every size.
func TestFrontierMatchesTlog(t *testing.T) {
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	var f frontier
	for n := int64(0); n < 300; n++ {
		data := fmt.Appendf(nil, "record %d", n)
		want, err := tlog.StoredHashes(n, data, r)
		if err != nil {
			t.Fatal(err)
		}
		got := f.add(n, tlog.RecordHash(data), nil)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("record %d: stored hashes %v, tlog %v", n, got, want)
		}
		stored = append(stored, got...)
		th, err := tlog.TreeHash(n+1, r)
		if err != nil {
			t.Fatal(err)
		}
		if f.root(n+1) != th {
			t.Fatalf("size %d: root %v, tlog %v", n+1, f.root(n+1), th)
		}
		g, err := loadFrontier(n+1, r)
		if err != nil {
			t.Fatal(err)
		}
		if g.root(n+1) != th {
			t.Fatalf("size %d: loaded frontier root differs", n+1)
		}
	}
}
