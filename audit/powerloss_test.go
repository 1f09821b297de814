package audit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/audit/faultfs"
)

// Power loss drops every write that was not synced. Each round appends from
// many goroutines, cuts the power in the middle, reopens, and checks that
// every acknowledged event is there (by its request id), that the log
// verifies, and that appends continue.
func TestPowerLossKeepsEveryAcknowledgedEvent(t *testing.T) {
	fsys := faultfs.New()
	key := newKey(t, "log")
	opts := audit.Options{Dir: "/audit", Key: key, FS: fsys, SegmentSize: 16 << 10, MinCheckpointInterval: time.Millisecond, MaxCheckpointInterval: 5 * time.Millisecond}
	r := rand.New(rand.NewPCG(1, 2))
	acked := map[int64]string{} // index -> request id
	next := 0
	for round := range 12 {
		l, err := audit.Open(opts)
		if err != nil {
			t.Fatalf("round %d: open: %v", round, err)
		}
		rec := l.Recovery()
		if rec.Events < int64(len(acked)) {
			t.Fatalf("round %d: %d events after the crash, %d were acknowledged", round, rec.Events, len(acked))
		}
		checkAcked(t, l, acked)

		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					e := event(0)
					e.RequestID = fmt.Sprintf("round%d-w%d-%d", round, w, i)
					p, err := l.Append(context.Background(), e)
					if err != nil {
						return
					}
					mu.Lock()
					acked[p.Index] = e.RequestID
					mu.Unlock()
				}
			}()
		}
		// Let a random number of batches through, then cut the power.
		for l.Size() < int64(next+1+r.IntN(200)) {
			time.Sleep(100 * time.Microsecond)
		}
		if round%2 == 0 {
			fsys.Crash()
		} else {
			fsys.CrashTorn(r)
		}
		close(stop)
		wg.Wait()
		l.Close() // fails: its files went with the power
		next = len(acked)
	}
	l, err := audit.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	checkAcked(t, l, acked)
	appendN(t, l, 0, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := audit.Verify("/audit", audit.VerifyOptions{Keys: []string{key.VerifierKey()}, FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	if s.Events < int64(len(acked))+5 {
		t.Fatalf("summary %+v, %d acknowledged", s, len(acked))
	}
	t.Logf("%d acknowledged events survived 12 power losses; %v", len(acked), s)
}

func checkAcked(t *testing.T, l *audit.Log, acked map[int64]string) {
	t.Helper()
	for idx, id := range acked {
		rec, err := l.Read(idx)
		if err != nil {
			t.Fatalf("acknowledged index %d: %v", idx, err)
		}
		e, err := audit.DecodeEvent(rec)
		if err != nil || e.RequestID != id {
			t.Fatalf("acknowledged index %d: request %q, want %q (%v)", idx, e.RequestID, id, err)
		}
	}
}

// A full disk fails the appends that could not be written and loses nothing
// acknowledged; once space is back, appends go on. A failed fsync stops
// acknowledging until the log is reopened.
func TestFullDiskAndFailedFsync(t *testing.T) {
	fsys := faultfs.New()
	key := newKey(t, "log")
	opts := audit.Options{Dir: "/audit", Key: key, FS: fsys}
	l := openLog(t, opts)
	appendN(t, l, 0, 10)

	fsys.Inject(func(op faultfs.Op, name string) error {
		if op == faultfs.OpWrite && name == "/audit/seg-00000000000000000000" {
			return syscall.ENOSPC
		}
		return nil
	})
	if _, err := l.Append(context.Background(), event(10)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v", err)
	}
	fsys.Inject(nil)
	if p, err := l.Append(context.Background(), event(11)); err != nil || p.Index != 10 {
		t.Fatalf("append after space came back: %v %v", p, err)
	}

	fsys.Inject(func(op faultfs.Op, name string) error {
		if op == faultfs.OpSync {
			return syscall.EIO
		}
		return nil
	})
	if _, err := l.Append(context.Background(), event(12)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with a failing fsync: %v", err)
	}
	fsys.Inject(nil)
	if _, err := l.Append(context.Background(), event(13)); err == nil || l.Err() == nil {
		t.Fatal("acknowledged after a failed fsync")
	}
	l.Close()
	fsys.Crash()
	l = openLog(t, opts)
	if l.Size() < 11 {
		t.Fatalf("size %d after reopen, 11 were acknowledged", l.Size())
	}
	appendN(t, l, 20, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify("/audit", audit.VerifyOptions{Keys: []string{key.VerifierKey()}, FS: fsys}); err != nil {
		t.Fatal(err)
	}
}
