package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// SigningKey signs checkpoints: an Ed25519 key in the signed-note format. Its
// name is the log id.
type SigningKey struct {
	signer   note.Signer
	verifier string
}

// errBadKey never says anything about the key's bytes.
var errBadKey = errors.New("not a note signing key (PRIVATE+KEY+NAME+HASH+KEY, Ed25519)")

// ParseSigningKey parses a private key in the signed-note format
// (PRIVATE+KEY+NAME+HASH+BASE64), as note.GenerateKey makes.
func ParseSigningKey(skey string) (*SigningKey, error) {
	skey = strings.TrimSpace(skey)
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, errBadKey
	}
	// note.Signer does not give its public key: derive the verifier key from
	// the seed, the last field (base64, which may hold '+').
	f := strings.SplitN(skey, "+", 5)
	if len(f) != 5 {
		return nil, errBadKey
	}
	raw, err := base64.StdEncoding.DecodeString(f[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errBadKey
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, errBadKey
	}
	return &SigningKey{signer: s, verifier: vkey}, nil
}

// GenerateSigningKey makes a new key named name (the log id) and returns it
// with its private form for a key file.
func GenerateSigningKey(name string) (*SigningKey, string, error) {
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return nil, "", fmt.Errorf("generate audit signing key %q: %w", name, err)
	}
	k, err := ParseSigningKey(skey)
	if err != nil {
		return nil, "", err
	}
	return k, skey, nil
}

// Name returns the key's name, which is the log id.
func (k *SigningKey) Name() string { return k.signer.Name() }

// Signer returns the key as a note.Signer.
func (k *SigningKey) Signer() note.Signer { return k.signer }

// VerifierKey returns the public verifier key (NAME+HASH+BASE64): what
// `custos audit key` prints and `custos audit verify --key` takes.
func (k *SigningKey) VerifierKey() string { return k.verifier }

// LoadSigningKey reads a key file. It refuses a file that its group or
// others can read or write: the signing key is what makes the log
// tamper-evident.
func LoadSigningKey(path string) (*SigningKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load audit signing key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load audit signing key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load audit signing key %s: mode %04o lets others read it; chmod 600", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load audit signing key: %w", err)
	}
	k, err := ParseSigningKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("load audit signing key %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateSigningKey loads the key file at path. If there is none and
// create is set, it generates a key named name (the log id) and writes it
// with mode 0600 (creating the parent directory 0700); otherwise a missing
// file is an error. A key file with a different name is an error too.
func LoadOrCreateSigningKey(path, name string, create bool) (*SigningKey, error) {
	k, err := LoadSigningKey(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createSigningKey(path, name)
	}
	if err != nil {
		return nil, err
	}
	if name != "" && k.Name() != name {
		return nil, fmt.Errorf("load audit signing key %s: key is for log %q, want %q", path, k.Name(), name)
	}
	return k, nil
}

func createSigningKey(path, name string) (*SigningKey, error) {
	k, skey, err := GenerateSigningKey(name)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create audit signing key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create audit signing key: %w", err)
	}
	_, err = f.WriteString(skey + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("create audit signing key %s: %w", path, err)
	}
	if err := (OSFS{}).SyncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("create audit signing key %s: %w", path, err)
	}
	return k, nil
}

// VerifierKeyFile returns the verifier key of the key file at path.
func VerifierKeyFile(path string) (string, error) {
	k, err := LoadSigningKey(path)
	if err != nil {
		return "", err
	}
	return k.VerifierKey(), nil
}
