package audit_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-dev/custos/audit"
	"golang.org/x/mod/sumdb/note"
)

func TestSigningKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "audit.key")
	if _, err := audit.LoadOrCreateSigningKey(path, "replica-1", false); err == nil {
		t.Fatal("loaded a missing key file without create")
	}
	k, err := audit.LoadOrCreateSigningKey(path, "replica-1", true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	again, err := audit.LoadOrCreateSigningKey(path, "replica-1", true)
	if err != nil || again.VerifierKey() != k.VerifierKey() {
		t.Fatalf("reloaded key differs: %v", err)
	}
	vkey, err := audit.VerifierKeyFile(path)
	if err != nil || vkey != k.VerifierKey() || !strings.HasPrefix(vkey, "replica-1+") {
		t.Fatalf("verifier key %q, %v", vkey, err)
	}
	if _, err := note.NewVerifier(vkey); err != nil {
		t.Fatalf("verifier key does not parse: %v", err)
	}
	if _, err := audit.LoadOrCreateSigningKey(path, "replica-2", true); err == nil {
		t.Fatal("loaded replica-1's key as replica-2's")
	}
	raw, _ := os.ReadFile(path)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		os.Chmod(path, mode)
		_, err := audit.LoadSigningKey(path)
		if err == nil {
			t.Fatalf("loaded a key file with mode %04o", mode)
		}
		if strings.Contains(err.Error(), strings.TrimSpace(string(raw))[20:]) {
			t.Fatal("error quotes the key")
		}
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("PRIVATE+KEY+replica-1+00000000+AAAA\n"), 0o600)
	if _, err := audit.LoadSigningKey(path); err == nil || strings.Contains(err.Error(), "AAAA") {
		t.Fatalf("bad key: %v", err)
	}
}

func TestKeyRotationFollowedByVerify(t *testing.T) {
	dir := t.TempDir()
	k1, k2, k3 := newKey(t, "log"), newKey(t, "log"), newKey(t, "log")
	l := openLog(t, audit.Options{Dir: dir, Key: k1})
	appendN(t, l, 0, 10)
	if _, err := l.RotateKey(k2); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 10, 10)
	l.Close()

	// Reopening needs the new key now; the old one alone is refused.
	if _, err := audit.Open(audit.Options{Dir: dir, Key: k1}); err == nil {
		t.Fatal("reopened with the retired key")
	}
	// Open hands over to k3 given k2 as the previous key.
	l = openLog(t, audit.Options{Dir: dir, Key: k3, PreviousKey: k2})
	if !l.Recovery().Rotated {
		t.Fatal("Open did not hand over")
	}
	appendN(t, l, 20, 5)
	l.Close()

	s, err := audit.Verify(dir, audit.VerifyOptions{Keys: []string{k1.VerifierKey()}})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Keys) != 3 || s.Keys[2] != k3.VerifierKey() || s.Covered != 25 {
		t.Fatalf("summary %+v", s)
	}
	// The latest key alone cannot vouch for checkpoints before it.
	if _, err := audit.Verify(dir, audit.VerifyOptions{Keys: []string{k3.VerifierKey()}}); err == nil {
		t.Fatal("verified the early checkpoints with the latest key")
	}
	// A retired key signing after its hand-over is refused: a stolen old key
	// cannot extend the log.
	l = openLog(t, audit.Options{Dir: t.TempDir(), Key: k1})
	appendN(t, l, 0, 30)
	late, _ := l.Checkpoint()
	l.Close()
	ve := verifyErr(t, dir, audit.VerifyOptions{Keys: []string{k1.VerifierKey()}, Checkpoints: [][]byte{late.Note}})
	if ve.Checkpoint != 30 || !strings.Contains(ve.Reason, "handed over") {
		t.Fatalf("got %v", ve)
	}
}
