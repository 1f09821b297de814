package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-dev/custos/config/configtest"
)

// allocBudget is the most memory Parse may allocate, in total, on a hostile
// file. Before the limits the alias bomb took 3.7 GB.
const allocBudget = 64 << 20

// allocated returns the bytes f allocates, in total, across the process.
// No test in this package runs in parallel, so the figure is f's.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// onlyError parses src and returns its one error, failing the test if
// there is not exactly one.
func onlyError(t *testing.T, src []byte) *Error {
	t.Helper()
	var err error
	used := allocated(func() { _, err = Parse(src) })
	t.Logf("Parse of %d bytes allocated %d KB", len(src), used>>10)
	if used > allocBudget {
		t.Errorf("Parse allocated %d MB, budget %d MB", used>>20, allocBudget>>20)
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse: %v, want Errors", err)
	}
	if len(errs) != 1 {
		t.Fatalf("%d errors, want 1:\n%.2000v", len(errs), errs)
	}
	return errs[0]
}

func TestConfigAliasBombRefusedInBoundedMemory(t *testing.T) {
	src := configtest.AliasBomb()
	e := onlyError(t, src)
	want := fmt.Sprintf("alias *conn expands the configuration to more than %d YAML nodes, the limit", MaxNodes)
	if e.Msg != want || e.Path != "" {
		t.Errorf("error %q, want %q", e, want)
	}
	lines := strings.Split(string(src), "\n")
	if e.Line < 3 || e.Line > len(lines) || lines[e.Line-1] != "  - *conn" {
		t.Errorf("line %d is not one of the aliases", e.Line)
	}
}

func TestConfigNestedAliasBombRefused(t *testing.T) {
	// Nine levels of ten: a billion nodes.
	var b strings.Builder
	b.WriteString("x0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "x%d: &a%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("connections: [*a9]\n")
	e := onlyError(t, []byte(b.String()))
	if !strings.Contains(e.Msg, "more than 100000 YAML nodes") {
		t.Errorf("error %q", e)
	}
}

func TestConfigManyNodesRefused(t *testing.T) {
	// No alias, well under MaxFileSize, more than MaxNodes nodes.
	src := "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    hosts: [" + strings.Repeat("x, ", MaxNodes) + "x]\n"
	e := onlyError(t, []byte(src))
	want := fmt.Sprintf("the configuration has more than %d YAML nodes, the limit", MaxNodes)
	if e.Msg != want || e.Line != 4 {
		t.Errorf("error %q, want line 4: %s", e, want)
	}
}

func TestConfigAliasCycleRefused(t *testing.T) {
	for _, src := range []string{
		"connections: &a [*a]\n",
		"connections:\n  - &c {name: a, labels: {x: [*c]}}\n",
	} {
		e := onlyError(t, []byte(src))
		if !strings.Contains(e.Msg, "refers to a node that contains it") {
			t.Errorf("%q: error %q", src, e)
		}
	}
}

func TestConfigParseRefusesLargeInput(t *testing.T) {
	src := append([]byte("audit:\n  dir: x\n"), bytes.Repeat([]byte("#"), MaxFileSize)...)
	e := onlyError(t, src)
	if !strings.Contains(e.Msg, "more than 1048576 bytes (1 MiB), the limit") {
		t.Errorf("error %q", e)
	}
}

func TestConfigErrorsCapped(t *testing.T) {
	// A validation error on line 2, found after the decoding errors below
	// it, must still come first.
	var b strings.Builder
	b.WriteString("approvals:\n  mode: bogus\nconnections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    hosts:\n")
	const bad = 200
	for range bad {
		b.WriteString("      - 7\n")
	}
	var err error
	used := allocated(func() { _, err = Parse([]byte(b.String())) })
	if used > allocBudget {
		t.Errorf("Parse allocated %d MB", used>>20)
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse: %v", err)
	}
	if len(errs) != MaxErrors+1 {
		t.Fatalf("%d errors listed, want %d and a count", len(errs), MaxErrors)
	}
	if errs[0].Path != "approvals.mode" {
		t.Errorf("first error %q, want approvals.mode's", errs[0])
	}
	for i, e := range errs[1:MaxErrors] {
		if want := fmt.Sprintf("connections[0].hosts[%d]", i); e.Path != want || e.Line != 7+i {
			t.Errorf("error %d: %q, want %s at line %d", i+1, e, want, 7+i)
		}
	}
	last := errs[MaxErrors]
	more := bad + 1 - MaxErrors
	if want := fmt.Sprintf("and %d more errors (only the first %d are listed)", more, MaxErrors); last.Msg != want || last.More != more || last.Path != "" || last.Line != 0 {
		t.Errorf("last entry %+v, want %q", *last, want)
	}
	if errs.Count() != bad+1 {
		t.Errorf("Count() = %d, want %d", errs.Count(), bad+1)
	}
	if !strings.HasSuffix(err.Error(), "\n"+last.Msg) {
		t.Errorf("Error() does not end with the count")
	}
}

func TestConfigErrorsUnderTheCapAllListed(t *testing.T) {
	src := "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    hosts: [" + strings.Repeat("7, ", MaxErrors-1) + "7]\n"
	errs := parseErrors(t, src)
	if len(errs) != MaxErrors || errs.Count() != MaxErrors || errs[MaxErrors-1].More != 0 {
		t.Errorf("%d errors, Count %d; want all %d listed", len(errs), errs.Count(), MaxErrors)
	}
}

func TestConfigLongValuesCut(t *testing.T) {
	long := strings.Repeat("a", 10_000)
	shown := `"` + strings.Repeat("a", maxShown) + `…"`
	tests := []struct {
		name, src, path, msg string
	}{
		{"string", "listen:\n  grpc: " + long + "\n", "listen.grpc", shown + " is not a valid address"},
		{"number", "listen:\n  grpc: " + strings.Repeat("1", 10_000) + "\n", "listen.grpc", strings.Repeat("1", maxShown) + "…"},
		{"unknown key", "? " + long + "\n: 1\n", `[` + shown + `]`, "unknown key " + shown},
		{"duration", "approvals:\n  timeout: " + long + "\n", "approvals.timeout", shown + " is not a duration"},
		{"enum", "approvals:\n  mode: " + long + "\n", "approvals.mode", shown + " is not a valid mode"},
		{"url", "connections:\n  - name: a\n    upstream: http://" + long + "\n", "connections[0].upstream", `"http://` + strings.Repeat("a", maxShown-len("http://")) + `…"`},
		{"profile name", "masking:\n  profiles:\n    ? " + long + "\n    : {entities: [ssn]}\n", "masking.profiles[" + shown + "]", shown + " is not a valid profile name"},
		{"multi-byte", "listen:\n  grpc: " + strings.Repeat("é", 5000) + "\n", "listen.grpc", `"` + strings.Repeat("é", maxShown/2) + `…"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, tt.src)
			e := errs[0]
			if e.Path != tt.path || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("error %q, want path %s and %q", e, tt.path, tt.msg)
			}
			if len(errs.Error()) > 600 {
				t.Errorf("message is %d bytes: %s", len(errs.Error()), errs)
			}
		})
	}
}

func TestConfigLongSecretKeyValueHidden(t *testing.T) {
	// A key cut in the path may have named a secret: its value is not shown.
	src := "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    labels:\n      " + strings.Repeat("k", 100) + "_password: 8675309\n"
	errs := parseErrors(t, src)
	if strings.Contains(errs.Error(), "8675309") {
		t.Errorf("the value appears: %s", errs)
	}
}

func TestConfigLoadRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, kind string }{
		{fifo, "a FIFO"},
		{link, "a FIFO"},
		{"/dev/zero", "a character device"},
		{dir, "a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			if _, err := os.Stat(tt.path); err != nil {
				t.Skip(err)
			}
			err := loadWithin(t, tt.path, 5*time.Second)
			if !errors.Is(err, ErrNotRegularFile) || !strings.Contains(err.Error(), tt.kind) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("Load(%s): %v, want ErrNotRegularFile naming %s", tt.path, err, tt.kind)
			}
		})
	}
}

func TestConfigLoadRefusesALargeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: 1 GiB of zeros takes no disk.
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var lerr error
	used := allocated(func() { lerr = loadWithin(t, path, 5*time.Second) })
	if !errors.Is(lerr, ErrFileTooLarge) || !strings.Contains(lerr.Error(), "1073741824 bytes, more than 1048576 bytes (1 MiB), the limit") {
		t.Errorf("Load: %v, want ErrFileTooLarge naming the size and the limit", lerr)
	}
	if used > 1<<20 {
		t.Errorf("Load allocated %d bytes: it read the file", used)
	}
}

func TestConfigLoadAcceptsAFileAtTheLimit(t *testing.T) {
	src := "audit:\n  dir: x\n"
	src += strings.Repeat("#", MaxFileSize-len(src)-1) + "\n"
	path := filepath.Join(t.TempDir(), "full.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("Load: %v", err)
	}
	link := filepath.Join(t.TempDir(), "link.yaml")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(link); err != nil {
		t.Fatalf("Load through a symbolic link: %v", err)
	}
	if err := os.WriteFile(path, []byte(src+"#"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrFileTooLarge) {
		t.Fatalf("Load of one byte more: %v", err)
	}
}

// loadWithin runs Load(path), failing the test if it has not returned
// within d, and returns its error.
func loadWithin(t *testing.T, path string, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Load(path)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		// Unblock a Load stuck opening a FIFO, so that the goroutine ends.
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatalf("Load(%s) did not return within %s", path, d)
		return nil
	}
}

func TestConfigEveryMessageBounded(t *testing.T) {
	// Each value of the file in turn is replaced by long values of several
	// shapes: no message may carry more than a cut of it.
	const long = 20_000
	values := []string{
		strings.Repeat("a", long),
		strings.Repeat("9", long),
		strings.Repeat("é", long/2),
		"http://" + strings.Repeat("a", long),
		"http://a:" + strings.Repeat("9", long),
		"http://a:" + strings.Repeat("x", long),
		"https://" + strings.Repeat("a.", long/2) + "com/",
		"a:" + strings.Repeat("9", long),
		"a:" + strings.Repeat("x", long),
		"json:" + strings.Repeat("x", long),
		"query:" + strings.Repeat(" ", long),
		"[" + strings.Repeat("9", long) + "]",
	}
	templates := []string{
		"listen:\n  grpc: %s\n",
		"listen:\n  grpc: 127.0.0.1:1\n  xds: %[1]s\n  http: %[1]s\n",
		"identity:\n  issuers:\n    - issuer: %s\n      audiences: [%[1]s]\n",
		"identity:\n  issuers:\n    - {issuer: 'https://a.example/', audiences: [x]}\n    - {issuer: %s, audiences: [x]}\n",
		"policy:\n  bundle: [%s]\n",
		"connections:\n  - name: %s\n    upstream: %[1]s\n    hosts: [%[1]s, %[1]s]\n    kind: %[1]s\n    masking: %[1]s\n    policy_mode: %[1]s\n    forward_token: %[1]s\n    labels: {a: [%[1]s]}\n",
		"connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    kind: sql-http\n    dialect: %s\n    statement_from: %[1]s\n",
		"connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    dialect: %s\n",
		"approvals:\n  mode: %s\n  timeout: %[1]s\n",
		"masking:\n  profiles:\n    p:\n      entities: [%s, %[1]s]\n",
		"audit:\n  dir: [%s]\n",
		"dev:\n  issuer: %s\n  demo_upstream: %[1]s\n",
	}
	for _, tmpl := range templates {
		for _, v := range values {
			// Quoted with single quotes so that every value is a string,
			// and plain where YAML allows, for the other types.
			for _, shown := range []string{"'" + v + "'", v} {
				_, err := Parse([]byte(fmt.Sprintf(tmpl, shown)))
				var errs Errors
				if !errors.As(err, &errs) {
					continue
				}
				for _, e := range errs {
					if len(e.Error()) > 400 {
						t.Errorf("%.40q with %.20q…: %d-byte message: %.600s", tmpl, shown, len(e.Error()), e)
					}
				}
			}
		}
	}
}
