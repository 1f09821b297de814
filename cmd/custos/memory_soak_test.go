//go:build soak

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/filters/mask/calibrate"
)

// soakBody is the size of the streamed response the soak test masks.
const soakBody = 200 << 20

// maxGrowth is how far above its idle size the child's RSS may grow while
// it masks soakBody (issue 15: memory stays bounded whatever the size).
const maxGrowth = 64 << 20

// TestMemoryStreamedMaskedResponse runs a child `custos dev` (built without
// -race) with a masking: pci connection in front of an upstream that
// streams a 200 MB JSON array of records holding card numbers, reads the
// response through the data plane, checks that no Luhn-valid card number
// is left in it, and measures the child's resident memory above its idle
// size: it must stay under 64 MB.
//
//	go test -tags soak -run Memory ./cmd/custos/
func TestMemoryStreamedMaskedResponse(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc: the child's RSS cannot be read on this system")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "custos")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	records := make(chan int, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		size := soakBody
		if r.URL.Path == "/warm" {
			size = 256 << 10
		}
		records <- streamCards(w, size)
	}))
	defer up.Close()

	httpAddr, dpAddr := freePort(t), freePort(t)
	cfg := writeFile(t, "soak.yaml", `listen:
  grpc: `+freePort(t)+`
  xds: `+freePort(t)+`
  http: `+httpAddr+`
  dataplane: `+dpAddr+`
connections:
  - name: bulk
    upstream: `+up.URL+`
    kind: http
    masking: pci
audit:
  dir: `+filepath.Join(dir, "audit")+`
dev:
  issuer: false
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncWriter{}
	child := exec.CommandContext(ctx, bin, "dev", "--config", cfg)
	child.Stdout, child.Stderr = logs, logs
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = child.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = child.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = child.Process.Kill()
		}
	}()
	pid := child.Process.Pid
	waitReady(t, "http://"+httpAddr+"/readyz", logs)

	// a small masked response first, so that the idle size includes a
	// warm engine instance and the data plane's first connection
	// (the data plane may start listening just after readyz answers)
	var resp *http.Response
	var err error
	for try := 0; ; try++ {
		if resp, err = http.Get("http://" + dpAddr + "/bulk/warm"); err == nil || try == 100 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("data plane: %v\n%s", err, logs.String())
	}
	if resp.StatusCode != 200 {
		t.Fatalf("warm-up response %d\n%s", resp.StatusCode, logs.String())
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	<-records
	time.Sleep(500 * time.Millisecond)
	idle := procStatus(t, pid, "VmRSS")
	hwmIdle := procStatus(t, pid, "VmHWM")

	var peak int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if v, ok := readStatus(pid, "VmRSS"); ok && v > peak {
					peak = v
				}
			}
		}
	}()

	t0 := time.Now()
	resp, err = http.Get("http://" + dpAddr + "/bulk/records")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	chk := &luhnScanner{}
	n, err := io.Copy(chk, bufio.NewReaderSize(resp.Body, 64<<10))
	resp.Body.Close()
	elapsed := time.Since(t0)
	if err != nil {
		t.Fatalf("reading the masked body after %d bytes: %v", n, err)
	}
	chk.flush()
	sent := <-records
	close(stop)
	wg.Wait()
	hwm := procStatus(t, pid, "VmHWM")
	if v := procStatus(t, pid, "VmRSS"); v > peak {
		peak = v
	}

	growth := peak - idle
	if hwm > hwmIdle && hwm-idle > growth {
		growth = hwm - idle // a spike the sampling missed
	}
	t.Logf("masked %d MB (%d records) in %s (%.1f MB/s through the data plane)", n>>20, sent, elapsed.Round(time.Millisecond), float64(n)/1e6/elapsed.Seconds())
	t.Logf("child RSS: idle %.1f MB, peak sampled %.1f MB, VmHWM %.1f MB (%.1f MB before the body): %.1f MB above idle (limit %d MB)",
		mb(idle), mb(peak), mb(hwm), mb(hwmIdle), mb(growth), maxGrowth>>20)
	t.Logf("digit runs checked: %d, Luhn-valid card numbers left: %d, redactions seen: %d", chk.runs, chk.valid, chk.redacted)
	if chk.valid != 0 {
		t.Errorf("%d Luhn-valid card numbers reached the client (not shown)", chk.valid)
	}
	if chk.redacted < sent {
		t.Errorf("%d cards redacted of %d records: the body is not what the upstream sent, masked", chk.redacted, sent)
	}
	if growth >= maxGrowth {
		t.Errorf("the child grew %.1f MB above its idle size, over %d MB", mb(growth), maxGrowth>>20)
	}
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// streamCards writes a JSON array of records, each with a valid card
// number (Luhn), generated on the fly, until about size bytes are written,
// flushing every 64 KB (a chunked response). It returns the records sent.
func streamCards(w http.ResponseWriter, size int) int {
	fl, _ := w.(http.Flusher)
	r := rand.New(rand.NewPCG(7, 8))
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(`[`)
	written, n := 1, 0
	var line []byte
	for ; written < size; n++ {
		line = line[:0]
		if n > 0 {
			line = append(line, ',', '\n')
		}
		line = fmt.Appendf(line, `{"id":%d,"name":"Customer %d","card":"%s","amount":%d.%02d,"note":"paid by card, statement sent"}`,
			n, n, soakCard(r, n%2 == 0), r.IntN(100000), r.IntN(100))
		if _, err := bw.Write(line); err != nil {
			return n
		}
		written += len(line)
		if bw.Buffered() < len(line) && fl != nil {
			fl.Flush()
		}
	}
	bw.WriteString("]\n")
	bw.Flush()
	return n
}

// soakCard is a random Luhn-valid 16-digit card number starting with 4,
// grouped by spaces when spaced.
func soakCard(r *rand.Rand, spaced bool) string {
	d := make([]byte, 16)
	d[0] = '4'
	for k := 1; k < 15; k++ {
		d[k] = byte('0' + r.IntN(10))
	}
	for c := byte('0'); c <= '9'; c++ {
		d[15] = c
		if calibrate.Luhn(d) {
			break
		}
	}
	if !spaced {
		return string(d)
	}
	return string(d[0:4]) + " " + string(d[4:8]) + " " + string(d[8:12]) + " " + string(d[12:16])
}

// luhnScanner reads a body and counts the runs of 13 to 19 digits (single
// spaces or dashes between them allowed) that pass Luhn, never keeping a
// value beyond the run it is reading.
type luhnScanner struct {
	digits   []byte
	sepOK    bool
	runs     int
	valid    int
	redacted int
	tail     []byte
}

var redactedCard = []byte("[REDACTED:CARD]")

func (s *luhnScanner) Write(p []byte) (int, error) {
	// count the redactions, across writes
	buf := append(s.tail, p...)
	s.redacted += bytes.Count(buf, redactedCard)
	k := len(redactedCard) - 1
	if len(buf) < k {
		k = len(buf)
	}
	s.tail = append(s.tail[:0], buf[len(buf)-k:]...)
	// the tail is shorter than a marker: a marker counted now is never
	// counted again, and one the write cut is counted with the next
	for _, c := range p {
		switch {
		case c >= '0' && c <= '9':
			s.digits = append(s.digits, c)
			s.sepOK = true
		case (c == ' ' || c == '-') && s.sepOK && len(s.digits) > 0:
			s.sepOK = false
		default:
			s.flush()
		}
	}
	return len(p), nil
}

func (s *luhnScanner) flush() {
	if n := len(s.digits); n >= 13 {
		s.runs++
		if n <= 19 && calibrate.Luhn(s.digits) && s.digits[0] >= '2' && s.digits[0] <= '6' {
			s.valid++
		}
	}
	s.digits = s.digits[:0]
	s.sepOK = false
}

// waitReady polls url until it answers 200, failing after 60 s.
func waitReady(t *testing.T, url string, logs *syncWriter) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("custos dev not ready:\n%s", logs.String())
}

// procStatus reads a kB field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	v, ok := readStatus(pid, field)
	if !ok {
		t.Fatalf("/proc/%d/status: no %s", pid, field)
	}
	return v
}

func readStatus(pid int, field string) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0, false
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// syncWriter serialises the child's stdout and stderr into one buffer.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
