package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/audit/faultfs"
)

func TestAppendReopenVerify(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t, "replica-1")
	opts := audit.Options{Dir: dir, Key: key, SegmentSize: 4096}
	l := openLog(t, opts)
	pos := appendN(t, l, 0, 50)
	for i, p := range pos {
		if p.LogID != "replica-1" || p.Index != int64(i) {
			t.Fatalf("append %d: position %v", i, p)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, opts)
	if r := l.Recovery(); r.Events != 50 || r.TornBytes != 0 || r.Checkpoint.Size != 50 || r.RehashedEvents != 0 {
		t.Fatalf("recovery %+v", r)
	}
	appendN(t, l, 50, 30)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := audit.Verify(dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Events != 80 || s.Covered != 80 || s.Checkpoints < 2 {
		t.Fatalf("summary %+v", s)
	}
	// Small segments: the log spans several files.
	names, _ := audit.OSFS{}.ReadDir(dir)
	segs := 0
	for _, n := range names {
		if len(n) > 4 && n[:4] == "seg-" {
			segs++
		}
	}
	if segs < 3 {
		t.Fatalf("want several segments, got %v", names)
	}
}

func TestConcurrentAppendsGetDistinctIndexes(t *testing.T) {
	key := newKey(t, "log")
	l := openLog(t, audit.Options{Dir: t.TempDir(), Key: key})
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				p, err := l.Append(context.Background(), event(w*1000+i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[p.Index] {
					t.Errorf("index %d twice", p.Index)
				}
				seen[p.Index] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 1600 || l.Size() != 1600 {
		t.Fatalf("%d indexes, size %d", len(seen), l.Size())
	}
	for i := range int64(1600) {
		rec, err := l.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		e, err := audit.DecodeEvent(rec)
		if err != nil || e.Index != i {
			t.Fatalf("event %d: %v, index %d", i, err, e.Index)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestProofVerifiesOffline(t *testing.T) {
	key := newKey(t, "log")
	l := openLog(t, audit.Options{Dir: t.TempDir(), Key: key})
	defer l.Close()
	appendN(t, l, 0, 37)
	for _, idx := range []int64{0, 1, 17, 36} {
		p, err := l.Proof(context.Background(), idx)
		if err != nil {
			t.Fatal(err)
		}
		// Through JSON, as the API and the CLI hand it out.
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var q audit.Proof
		if err := json.Unmarshal(b, &q); err != nil {
			t.Fatal(err)
		}
		e, cp, err := audit.VerifyProof(&q, key.VerifierKey())
		if err != nil {
			t.Fatalf("index %d: %v", idx, err)
		}
		if e.Index != idx || e.RequestID == "" || cp.Size <= idx {
			t.Fatalf("index %d: event %d, checkpoint %d", idx, e.Index, cp.Size)
		}
		// Any change to the event breaks it.
		q.Event[len(q.Event)/2] ^= 1
		if _, _, err := audit.VerifyProof(&q, key.VerifierKey()); err == nil {
			t.Fatalf("index %d: altered event verified", idx)
		}
		q.Event[len(q.Event)/2] ^= 1
		// Another key does not verify it.
		if _, _, err := audit.VerifyProof(&q, newKey(t, "log").VerifierKey()); err == nil {
			t.Fatalf("index %d: verified with another key", idx)
		}
		// Nor does it prove another index.
		q.Index++
		if _, _, err := audit.VerifyProof(&q, key.VerifierKey()); err == nil {
			t.Fatalf("index %d: proof accepted for index %d", idx, q.Index)
		}
	}
}

func TestConsistencyProof(t *testing.T) {
	key := newKey(t, "log")
	l := openLog(t, audit.Options{Dir: t.TempDir(), Key: key})
	defer l.Close()
	appendN(t, l, 0, 10)
	old, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 10, 23)
	cur, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.ProveConsistency(old.Size, cur.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyConsistency(old.Checkpoint, cur.Checkpoint, p); err != nil {
		t.Fatal(err)
	}
	forged := old.Checkpoint
	forged.Root[0] ^= 1
	if err := audit.VerifyConsistency(forged, cur.Checkpoint, p); err == nil {
		t.Fatal("a forged older root is consistent")
	}
}

func TestAppendAfterCloseFails(t *testing.T) {
	l := openLog(t, audit.Options{Dir: t.TempDir(), Key: newKey(t, "log")})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), event(1)); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func TestOpenRefusesAnotherKey(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, audit.Options{Dir: dir, Key: newKey(t, "log")})
	appendN(t, l, 0, 3)
	l.Close()
	if _, err := audit.Open(audit.Options{Dir: dir, Key: newKey(t, "log")}); err == nil {
		t.Fatal("opened a log with a key that did not sign it")
	}
	if _, err := audit.Open(audit.Options{Dir: dir, Key: newKey(t, "other")}); err == nil {
		t.Fatal("opened log \"log\" as log \"other\"")
	}
}

func TestFaultFSIsAnFS(t *testing.T) {
	var _ audit.FS = faultfs.New()
}
