package devissuer

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	keysFile   = "keys.json"
	secretFile = "secret"
)

// load reads the keys and the secret from dir, making them on first run;
// without a dir both live in memory.
func (is *Issuer) load() error {
	if is.dir == "" {
		k, err := newKey()
		if err != nil {
			return err
		}
		is.keys, is.secret = []signingKey{k}, randomID()
		return nil
	}
	if err := os.MkdirAll(is.dir, 0o700); err != nil {
		return err
	}
	keys, err := readKeys(filepath.Join(is.dir, keysFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k, err := newKey()
		if err != nil {
			return err
		}
		keys = []signingKey{k}
		if err := is.save(keys); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	is.keys = keys
	path := filepath.Join(is.dir, secretFile)
	s, err := ReadSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		s = randomID()
		err = writePrivate(path, []byte(s+"\n"))
	}
	if err != nil {
		return err
	}
	is.secret = s
	return nil
}

func readKeys(path string) ([]signingKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var keys []signingKey
	for _, k := range set.Keys {
		rk, ok := k.Key.(*rsa.PrivateKey)
		if !ok || k.KeyID == "" {
			return nil, fmt.Errorf("%s: every key must be an RSA private key with a kid", path)
		}
		keys = append(keys, signingKey{ID: k.KeyID, Key: rk})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key", path)
	}
	return keys, nil
}

// save writes keys (private) to the issuer's directory; nothing in memory
// mode.
func (is *Issuer) save(keys []signingKey) error {
	if is.dir == "" {
		return nil
	}
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Key, KeyID: k.ID, Algorithm: string(jose.RS256), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return err
	}
	return writePrivate(filepath.Join(is.dir, keysFile), b)
}

// writePrivate replaces path with b, readable by its owner only.
func writePrivate(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// SecretPath is where an issuer with state directory dir keeps its dev
// secret.
func SecretPath(dir string) string { return filepath.Join(dir, secretFile) }
