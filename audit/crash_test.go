package audit_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
)

const crashChildEnv = "CUSTOS_AUDIT_CRASH_CHILD"

// A child process appends from many goroutines and reports each
// acknowledged index on stdout; the parent kills it with SIGKILL at a random
// moment, several times, and checks after each kill that every acknowledged
// event is in the log, that the log verifies and that appends continue.
// SIGKILL keeps the page cache, so this tests recovery from torn batches and
// half-written checkpoints; TestPowerLoss* tests lost unsynced writes.
func TestCrashSIGKILL(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	keyFile := filepath.Join(dir, "audit.key")
	key, err := audit.LoadOrCreateSigningKey(keyFile, "crash", true)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	acked := map[int64]string{}
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSIGKILL$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		// Kill after a random number of acknowledgements (not a random time:
		// the test never depends on how fast the machine is).
		killAt := 200 + r.IntN(2000)
		got := 0
		for sc.Scan() {
			idx, id, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(idx, 10, 64)
			if err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			acked[n] = id
			if got++; got == killAt {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if got < killAt {
			t.Fatalf("round %d: the child stopped after %d acknowledgements", round, got)
		}

		l, err := audit.Open(audit.Options{Dir: logDir, Key: key})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		checkAcked(t, l, acked)
		if _, err := l.Append(context.Background(), event(round)); err != nil {
			t.Fatalf("round %d: append after reopen: %v", round, err)
		}
		rec := l.Recovery()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := audit.Verify(logDir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		t.Logf("round %d: killed after %d acknowledgements; recovery cut %d torn bytes; %v", round, got, rec.TornBytes, s)
	}
}

// crashChild appends until it is killed, printing "INDEX REQUEST-ID" for each
// acknowledged event.
func crashChild(dir string) {
	key, err := audit.LoadSigningKey(filepath.Join(dir, "audit.key"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	l, err := audit.Open(audit.Options{Dir: filepath.Join(dir, "log"), Key: key, SegmentSize: 64 << 10, MinCheckpointInterval: 5 * time.Millisecond, MaxCheckpointInterval: 20 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	pid := os.Getpid()
	for g := range 16 {
		go func() {
			for i := 0; ; i++ {
				e := event(i)
				e.RequestID = fmt.Sprintf("p%d-g%d-%d", pid, g, i)
				p, err := l.Append(context.Background(), e)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(w, "%d %s\n", p.Index, e.RequestID)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}
