package credentials_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custos-dev/custos/credentials"
)

// secretLog is a logger whose output a test can scan for secrets. Each
// record is also passed to t.Log, so that what the scan passes is what a
// reader of the test output sees.
type secretLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (l *secretLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimSpace(string(p)))
	return l.buf.Write(p)
}

func (l *secretLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newLog returns a logger whose records are checked at cleanup: none may
// hold any of the secrets that secrets() returns then.
func newLog(t testing.TB, secrets func() []string) *slog.Logger {
	log, _ := newSecretLog(t, secrets)
	return log
}

// newSecretLog is newLog that also returns the log's output, for a test
// that waits for a record.
func newSecretLog(t testing.TB, secrets func() []string) (*slog.Logger, *secretLog) {
	l := &secretLog{t: t}
	t.Cleanup(func() { assertNoSecret(t, "log", l.String(), secrets()...) })
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

// assertNoSecret fails t when text holds any of secrets (or a URL-encoded
// form of one).
func assertNoSecret(t testing.TB, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, form := range []string{s, urlEncode(s)} {
			if strings.Contains(text, form) {
				t.Errorf("%s holds a secret (%d bytes)", what, len(s))
			}
		}
	}
}

func urlEncode(s string) string {
	r := strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D")
	return r.Replace(s)
}

// writeFile writes a credential file (0600) in t's temp dir.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustNew(t testing.TB, spec credentials.Spec, o credentials.Options) credentials.Injector {
	t.Helper()
	inj, err := credentials.New(spec, o)
	if err != nil {
		t.Fatalf("New(%v): %v", spec, err)
	}
	t.Cleanup(func() { inj.Close() })
	return inj
}

func header(m credentials.Mutation, name string) (string, bool) {
	for _, h := range m.Set {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

// replaceFile swaps path's content the way a secret rotation does: a new
// file renamed over the old one.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
