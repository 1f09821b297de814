package credentials

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var osGetenv = os.Getenv

// secret is a value parsed from a credential file, re-read when the file
// changes (another inode, as a Kubernetes projected volume's symlink swap
// gives, another size or another modification time), or from an
// environment variable, read once. Reads on the request path are one
// atomic load; the file is looked at no more than once per interval.
type secret[T any] struct {
	what     string // the configuration key, for logs and errors
	path     string // "" for an environment variable
	interval time.Duration
	now      func() time.Time
	parse    func([]byte) (T, error)
	log      *slog.Logger

	next atomic.Int64 // unix nanos of the next check
	val  atomic.Pointer[T]

	mu   sync.Mutex // one reader of the file at a time
	info os.FileInfo
}

// fileSecret reads path now and returns the secret that follows it.
func fileSecret[T any](what, path string, o Options, parse func([]byte) (T, error)) (*secret[T], error) {
	s := &secret[T]{what: what, path: path, interval: o.ReloadInterval, now: o.Now, parse: parse, log: o.Logger}
	if _, err := s.reload(true); err != nil {
		return nil, err
	}
	return s, nil
}

// envSecret reads the environment variable name once.
func envSecret[T any](what, name string, o Options, parse func([]byte) (T, error)) (*secret[T], error) {
	raw := o.Getenv(name)
	if raw == "" {
		return nil, fmt.Errorf("%s: environment variable %s is empty or unset", what, name)
	}
	v, err := parse([]byte(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: environment variable %s: %w", what, name, err)
	}
	s := &secret[T]{what: what}
	s.val.Store(&v)
	return s, nil
}

// get returns the current value, re-reading the file if it changed. When
// the changed file cannot be read or parsed (mid-write, removed during a
// rotation), the previous value stays in use and the file is looked at
// again at the next check.
func (s *secret[T]) get() (T, error) {
	if s.path == "" {
		return *s.val.Load(), nil
	}
	now := s.now().UnixNano()
	if now < s.next.Load() {
		return *s.val.Load(), nil
	}
	return s.reload(false)
}

func (s *secret[T]) reload(first bool) (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !first && now.UnixNano() < s.next.Load() {
		return *s.val.Load(), nil // another caller just checked
	}
	s.next.Store(now.Add(s.interval).UnixNano())
	fail := func(err error) (T, error) {
		if p := s.val.Load(); p != nil {
			s.log.Warn("credential file changed but cannot be used; keeping the previous value", "key", s.what, "file", s.path, "error", err)
			return *p, nil
		}
		var zero T
		return zero, err
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", s.what, err))
	}
	if s.info != nil && os.SameFile(s.info, fi) && s.info.ModTime().Equal(fi.ModTime()) && s.info.Size() == fi.Size() {
		return *s.val.Load(), nil
	}
	raw, err := os.ReadFile(s.path)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", s.what, err))
	}
	v, err := s.parse(raw)
	clear(raw)
	if err != nil {
		return fail(fmt.Errorf("%s: file %s: %w", s.what, s.path, err))
	}
	if s.info != nil {
		s.log.Info("credential file reloaded", "key", s.what, "file", s.path)
	}
	s.info = fi
	s.val.Store(&v)
	return v, nil
}

// errEmpty is the parse error of a blank secret.
var errEmpty = errors.New("is empty")
