package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The embedded store is a bbolt file: a single-file B+tree with
// copy-on-write pages and an fsync on every commit, so a crash leaves the
// last committed state; pure Go, maintained by etcd, which keeps its own
// state in it. Approvals are JSON documents keyed by id; a second bucket
// maps the dedupe key of each pending approval to its id.
var (
	bucketApprovals = []byte("approvals")
	bucketPending   = []byte("pending")
)

// FileStore is the embedded store.
type FileStore struct {
	db *bolt.DB
	w  watchers
}

// OpenFile opens (creating if needed, mode 0600) the store file at path.
// One process at a time holds it; another waits a second, then fails.
func OpenFile(path string) (*FileStore, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open approvals store %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open approvals store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketApprovals, bucketPending} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open approvals store %s: %w", path, err)
	}
	return &FileStore{db: db}, nil
}

// Create implements Store.
func (s *FileStore) Create(_ context.Context, a Approval, now time.Time) (Approval, bool, error) {
	key := []byte(dedupeKey(&a))
	var out Approval
	created := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		ab, pb := tx.Bucket(bucketApprovals), tx.Bucket(bucketPending)
		if id := pb.Get(key); id != nil {
			if raw := ab.Get(id); raw != nil {
				var old Approval
				if err := json.Unmarshal(raw, &old); err != nil {
					return fmt.Errorf("approval %s: %w", id, err)
				}
				if old.State == StatePending && now.Before(old.Expires) {
					out = old
					return nil
				}
			}
		}
		raw, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if err := ab.Put([]byte(a.ID), raw); err != nil {
			return err
		}
		out, created = a, true
		return pb.Put(key, []byte(a.ID))
	})
	if err != nil {
		return Approval{}, false, fmt.Errorf("create approval: %w", err)
	}
	return out, created, nil
}

// Get implements Store.
func (s *FileStore) Get(_ context.Context, id string) (Approval, error) {
	var a Approval
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketApprovals).Get([]byte(id))
		if raw == nil {
			return ErrNotFound
		}
		return json.Unmarshal(raw, &a)
	})
	return a, err
}

// List implements Store. It reads every approval: the file holds what one
// replica saw, and resolved approvals are few next to the requests.
func (s *FileStore) List(_ context.Context, state string, limit int) ([]Approval, error) {
	var out []Approval
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketApprovals).ForEach(func(_, raw []byte) error {
			var a Approval
			if err := json.Unmarshal(raw, &a); err != nil {
				return err
			}
			if state == "" || a.State == state {
				out = append(out, a)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Update implements Store: bbolt runs one writing transaction at a time,
// so the read, the change and the write are atomic.
func (s *FileStore) Update(_ context.Context, id string, change func(a *Approval) error) (Approval, error) {
	var a Approval
	err := s.db.Update(func(tx *bolt.Tx) error {
		ab, pb := tx.Bucket(bucketApprovals), tx.Bucket(bucketPending)
		raw := ab.Get([]byte(id))
		if raw == nil {
			return ErrNotFound
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		if err := change(&a); err != nil {
			return err
		}
		raw, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if err := ab.Put([]byte(id), raw); err != nil {
			return err
		}
		if a.State != StatePending {
			key := []byte(dedupeKey(&a))
			if bytes.Equal(pb.Get(key), []byte(id)) {
				return pb.Delete(key)
			}
		}
		return nil
	})
	if err != nil {
		return Approval{}, err
	}
	s.w.wake(id)
	return a, nil
}

// Watch implements Store: only this process writes the file, so its own
// commits are every change there is.
func (s *FileStore) Watch(id string) (<-chan struct{}, func()) { return s.w.watch(id) }

// Close implements Store.
func (s *FileStore) Close() error {
	if err := s.db.Close(); err != nil && !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return err
	}
	return nil
}
