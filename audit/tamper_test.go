package audit_test

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-dev/custos/audit"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The attacker in these tests can rewrite any file of the log directory and
// recompute every checksum and stored hash, but cannot use the signing key.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func frame(p []byte) []byte {
	h := make([]byte, 8, 8+len(p))
	binary.BigEndian.PutUint32(h, uint32(len(p)))
	c := crc32.Update(0, crcTable, h[:4])
	binary.BigEndian.PutUint32(h[4:], crc32.Update(c, crcTable, p))
	return append(h, p...)
}

// readFrames splits a segment or checkpoints file into its header and records.
func readFrames(t *testing.T, path string) ([]byte, [][]byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, b := b[:16], b[16:]
	var recs [][]byte
	for len(b) >= 8 {
		n := binary.BigEndian.Uint32(b)
		recs = append(recs, b[8:8+n])
		b = b[8+n:]
	}
	return head, recs
}

func writeFrames(t *testing.T, path string, head []byte, recs [][]byte) {
	t.Helper()
	out := append([]byte(nil), head...)
	for _, r := range recs {
		out = append(out, frame(r)...)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rehash rewrites the hashes file from the events, as a thorough attacker would.
func rehash(t *testing.T, dir string, recs [][]byte) {
	t.Helper()
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, rec := range recs {
		hs, err := tlog.StoredHashes(int64(i), rec, r)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	var b []byte
	for _, h := range stored {
		b = append(b, h[:]...)
	}
	if err := os.WriteFile(filepath.Join(dir, "hashes"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tamperLog makes a closed log of 40 events in one segment with checkpoints
// at 10, 20 and 40.
func tamperLog(t *testing.T) (string, *audit.SigningKey, string) {
	t.Helper()
	dir := t.TempDir()
	key := newKey(t, "log")
	l := openLog(t, audit.Options{Dir: dir, Key: key, MinCheckpointInterval: 1 << 40})
	for _, n := range []int{10, 10, 20} {
		appendN(t, l, int(l.Size()), n)
		if _, err := l.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, key, filepath.Join(dir, "seg-00000000000000000000")
}

func verifyErr(t *testing.T, dir string, opts audit.VerifyOptions) *audit.VerifyError {
	t.Helper()
	s, err := audit.Verify(dir, opts)
	if err == nil {
		t.Fatalf("tampered log verified: %v", s)
	}
	var ve *audit.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("not a VerifyError: %v", err)
	}
	t.Logf("verify: %v", err)
	return ve
}

func TestTamperIntactLogVerifies(t *testing.T) {
	dir, key, _ := tamperLog(t)
	s, err := audit.Verify(dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Events != 40 || s.Covered != 40 || s.Checkpoints != 3 {
		t.Fatalf("summary %+v", s)
	}
}

func TestTamperChangeOneByte(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fixCRC bool
		rehash bool
		want   int64 // the index Verify must name
	}{
		{"checksum left broken", false, false, 25},
		{"checksum recomputed", true, false, 25},
		// With the stored hashes rewritten too, only the signed root is left:
		// Verify names the first index after the last checkpoint that holds.
		{"stored hashes rewritten", true, true, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, key, seg := tamperLog(t)
			head, recs := readFrames(t, seg)
			i := strings.Index(string(recs[25]), `r-25`)
			recs[25][i+2] = '9' // r-25 -> r-95: still valid JSON
			if tc.fixCRC {
				writeFrames(t, seg, head, recs)
			} else {
				b, _ := os.ReadFile(seg)
				off := strings.Index(string(b), `r-25"`)
				b[off+2] = '9'
				os.WriteFile(seg, b, 0o600)
			}
			if tc.rehash {
				rehash(t, dir, recs)
			}
			ve := verifyErr(t, dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}})
			if ve.Index != tc.want {
				t.Fatalf("named index %d, want %d", ve.Index, tc.want)
			}
		})
	}
}

func TestTamperDeleteOne(t *testing.T) {
	dir, key, seg := tamperLog(t)
	head, recs := readFrames(t, seg)
	recs = append(recs[:12], recs[13:]...)
	writeFrames(t, seg, head, recs)
	rehash(t, dir, recs)
	ve := verifyErr(t, dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}})
	if ve.Index != 12 || !strings.Contains(ve.Reason, "missing") {
		t.Fatalf("got %v", ve)
	}
}

func TestTamperSwapTwo(t *testing.T) {
	dir, key, seg := tamperLog(t)
	head, recs := readFrames(t, seg)
	recs[30], recs[31] = recs[31], recs[30]
	writeFrames(t, seg, head, recs)
	rehash(t, dir, recs)
	ve := verifyErr(t, dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}})
	if ve.Index != 30 {
		t.Fatalf("got %v", ve)
	}
}

func TestTamperCutTailAfterCheckpoint(t *testing.T) {
	dir, key, seg := tamperLog(t)
	head, recs := readFrames(t, seg)
	writeFrames(t, seg, head, recs[:33])
	rehash(t, dir, recs[:33])
	ve := verifyErr(t, dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}})
	if ve.Index != 33 || ve.Checkpoint != 40 {
		t.Fatalf("got %v", ve)
	}
}

// An attacker who also drops the checkpoints that cover the cut events
// rewrites the directory into a shorter, self-consistent log. The checkpoints
// already shipped elsewhere (Kafka) catch it.
func TestTamperRewrittenDirectoryCaughtByShippedCheckpoints(t *testing.T) {
	dir, key, seg := tamperLog(t)
	shipped, err := audit.Checkpoints(nil, dir)
	if err != nil || len(shipped) != 3 {
		t.Fatalf("%d checkpoints, %v", len(shipped), err)
	}
	head, recs := readFrames(t, seg)
	writeFrames(t, seg, head, recs[:20])
	rehash(t, dir, recs[:20])
	ckHead, cks := readFrames(t, filepath.Join(dir, "checkpoints"))
	writeFrames(t, filepath.Join(dir, "checkpoints"), ckHead, cks[:2])

	if _, err := audit.Verify(dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}}); err != nil {
		t.Fatalf("the shortened directory alone should verify (nothing in it says otherwise): %v", err)
	}
	ve := verifyErr(t, dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}, Checkpoints: shipped})
	if ve.Index != 20 || ve.Checkpoint != 40 {
		t.Fatalf("got %v", ve)
	}
}

func TestTamperCheckpointSignedByAnotherKey(t *testing.T) {
	dir, key, _ := tamperLog(t)
	forger := newKey(t, "log") // same name, another key
	_, recs := readFrames(t, filepath.Join(dir, "checkpoints"))
	last, err := note.Open(recs[2], note.VerifierList(mustVerifier(t, key.VerifierKey())))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := note.Sign(&note.Note{Text: last.Text}, forger.Signer())
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(filepath.Join(dir, "checkpoints"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write(frame(forged))
	f.Close()
	ve := verifyErr(t, dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}})
	if ve.Checkpoint != 40 || !strings.Contains(ve.Reason, "trusted key") {
		t.Fatalf("got %v", ve)
	}
}

// A fork needs the signing key: two histories signed at the same size. Given
// both checkpoints, Verify reports the fork.
func TestTamperFork(t *testing.T) {
	dir, key, _ := tamperLog(t)
	other := t.TempDir()
	l := openLog(t, audit.Options{Dir: other, Key: key, MinCheckpointInterval: 1 << 40})
	appendN(t, l, 100, 20)
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	ve := verifyErr(t, dir, audit.VerifyOptions{Keys: []string{key.VerifierKey()}, Checkpoints: [][]byte{cp.Note}})
	if ve.Checkpoint != 20 || !strings.Contains(ve.Reason, "fork") {
		t.Fatalf("got %v", ve)
	}
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
