package audit_test

import (
	"bytes"
	"testing"

	"github.com/custos-dev/custos/audit"
)

func TestReaderScansProvesWithoutTheKey(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t, "replica-1")
	l := openLog(t, audit.Options{Dir: dir, Key: key, SegmentSize: 2048})
	appendN(t, l, 0, 40)
	want := make([][]byte, 40)
	for i := range want {
		b, err := l.Read(int64(i))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = b
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	r, err := audit.OpenReader(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID() != "replica-1" {
		t.Fatalf("id %q", r.ID())
	}
	for _, lo := range []int64{0, 17, 39, 40} {
		next := lo
		err := r.Scan(lo, func(i int64, rec []byte) error {
			if i != next || !bytes.Equal(rec, want[i]) {
				t.Fatalf("scan from %d: index %d, want %d (or bytes differ)", lo, i, next)
			}
			next++
			return nil
		})
		if err != nil || next != 40 {
			t.Fatalf("scan from %d: ended at %d: %v", lo, next, err)
		}
	}
	if b, err := r.Read(23); err != nil || !bytes.Equal(b, want[23]) {
		t.Fatalf("read 23: %v", err)
	}
	if _, err := r.Read(40); err == nil {
		t.Fatal("read past the end")
	}

	cps, err := r.Checkpoints()
	if err != nil || len(cps) == 0 {
		t.Fatalf("checkpoints %d: %v", len(cps), err)
	}
	last := cps[len(cps)-1]
	if last.Size != 40 {
		t.Fatalf("last checkpoint size %d", last.Size)
	}
	for _, i := range []int64{0, 1, 20, 39} {
		p, err := r.Prove(last, i, want[i])
		if err != nil {
			t.Fatal(err)
		}
		e, cp, err := audit.VerifyProof(p, key.VerifierKey())
		if err != nil || e.Index != i || cp.Size != 40 {
			t.Fatalf("proof of %d: %v", i, err)
		}
	}
	if _, err := r.Prove(last, 40, want[0]); err == nil {
		t.Fatal("proved an index the checkpoint does not cover")
	}
	if _, err := audit.OpenReader(nil, t.TempDir()); err == nil {
		t.Fatal("opened a directory without a log")
	}
}
