package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a commitment to the first Size events of a log, in the
// checkpoint format of transparency logs (C2SP tlog-checkpoint):
//
//	<origin: the log id>
//	<size, decimal>
//	<root hash, base64>
//	[next-key <verifier key>]
//
// signed as a note (golang.org/x/mod/sumdb/note, Ed25519). The optional
// next-key line hands the log over to a new signing key: such a checkpoint is
// signed by the old key and by the new one, and from its size on only the new
// key counts.
type Checkpoint struct {
	Origin  string
	Size    int64
	Root    tlog.Hash
	NextKey string
}

const nextKeyPrefix = "next-key "

// Text returns the checkpoint's note text.
func (c Checkpoint) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
	if c.NextKey != "" {
		b.WriteString(nextKeyPrefix + c.NextKey + "\n")
	}
	return b.String()
}

// ParseCheckpoint parses a checkpoint's note text (not its signatures).
func ParseCheckpoint(text string) (Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, errors.New("parse checkpoint: text does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 || len(lines) > 4 {
		return Checkpoint{}, errors.New("parse checkpoint: want origin, size, root hash and an optional next-key line")
	}
	c := Checkpoint{Origin: lines[0]}
	if c.Origin == "" {
		return Checkpoint{}, errors.New("parse checkpoint: empty origin")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return Checkpoint{}, errors.New("parse checkpoint: bad size")
	}
	c.Size = n
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, errors.New("parse checkpoint: bad root hash")
	}
	copy(c.Root[:], h)
	if len(lines) == 4 {
		k, ok := strings.CutPrefix(lines[3], nextKeyPrefix)
		if !ok {
			return Checkpoint{}, errors.New("parse checkpoint: unknown extension line")
		}
		if _, err := note.NewVerifier(k); err != nil {
			return Checkpoint{}, errors.New("parse checkpoint: bad next-key")
		}
		c.NextKey = k
	}
	return c, nil
}

// SignedCheckpoint is a checkpoint with its signed note.
type SignedCheckpoint struct {
	Checkpoint
	// Note is the signed note, as stored and shipped.
	Note []byte
}

// noteText returns the text of a signed note without checking signatures.
func noteText(msg []byte) (string, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return "", errors.New("not a signed note")
	}
	return string(msg[:i+1]), nil
}

// signCheckpoint signs c with keys.
func signCheckpoint(c Checkpoint, keys ...*SigningKey) ([]byte, error) {
	signers := make([]note.Signer, len(keys))
	for i, k := range keys {
		signers[i] = k.signer
	}
	return note.Sign(&note.Note{Text: c.Text()}, signers...)
}

// OpenCheckpoint checks a signed checkpoint against verifier keys (any one
// valid signature suffices) and parses it.
func OpenCheckpoint(msg []byte, keys ...string) (SignedCheckpoint, error) {
	vs := make([]note.Verifier, 0, len(keys))
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		v, err := note.NewVerifier(k)
		if err != nil {
			return SignedCheckpoint{}, fmt.Errorf("open checkpoint: bad verifier key: %w", err)
		}
		vs = append(vs, v)
	}
	n, err := note.Open(msg, note.VerifierList(vs...))
	if err != nil {
		return SignedCheckpoint{}, fmt.Errorf("open checkpoint: %w", err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return SignedCheckpoint{}, err
	}
	return SignedCheckpoint{Checkpoint: c, Note: msg}, nil
}
