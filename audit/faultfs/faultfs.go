// Package faultfs is an in-memory file system for crash tests of the audit
// log. It keeps what was written but not synced apart from what was synced,
// and Crash drops the unsynced part as a power loss would: file contents
// revert to their last Sync, and directory entries (created or renamed files)
// to the last SyncDir of their directory. Errors can be injected into any
// operation to play a full or failing disk.
//
// FS implements audit.FS; audit's tests that use it live in package
// audit_test.
package faultfs

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/custos-dev/custos/audit"
)

var _ audit.FS = (*FS)(nil)

// ErrCrashed is returned by a file opened before a simulated crash.
var ErrCrashed = errors.New("faultfs: file was open at a simulated crash")

// Op names an operation for fault injection.
type Op string

// Operations that Inject can fail.
const (
	OpOpen     Op = "open"
	OpWrite    Op = "write"
	OpSync     Op = "sync"
	OpTruncate Op = "truncate"
	OpRename   Op = "rename"
	OpSyncDir  Op = "syncdir"
)

// FS is an in-memory file system that can lose unsynced writes. The zero
// value is not usable; call New.
type FS struct {
	mu      sync.Mutex
	live    map[string]*node // what a reader sees now
	durable map[string]*node // the directory entries that survive a crash
	dirs    map[string]bool
	gen     int
	inject  func(op Op, name string) error
}

type node struct {
	data   []byte
	synced []byte
	mode   fs.FileMode
}

// New returns an empty file system.
func New() *FS {
	return &FS{live: map[string]*node{}, durable: map[string]*node{}, dirs: map[string]bool{"/": true, ".": true}}
}

// Inject makes every later operation consult f first: a non-nil error from f
// fails the operation (with no effect) and is returned to the caller. Inject(nil)
// stops injecting.
func (f *FS) Inject(fn func(op Op, name string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inject = fn
}

func (f *FS) fault(op Op, name string) error {
	if f.inject == nil {
		return nil
	}
	return f.inject(op, name)
}

// Crash simulates a power loss: every file reverts to what was synced, every
// directory entry to its last SyncDir, and files open now fail with
// ErrCrashed.
func (f *FS) Crash() { f.crash(nil) }

// CrashTorn simulates a power loss during which part of the unsynced data
// reached the disk: of each file's unsynced appended bytes a random prefix
// survives, and its last bytes may be garbage (a torn sector).
func (f *FS) CrashTorn(r *rand.Rand) { f.crash(r) }

func (f *FS) crash(r *rand.Rand) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	f.live = map[string]*node{}
	for name, n := range f.durable {
		f.live[name] = n
	}
	for _, n := range f.live {
		kept := append([]byte(nil), n.synced...)
		if r != nil && len(n.data) > len(n.synced) && string(n.data[:len(n.synced)]) == string(n.synced) {
			extra := n.data[len(n.synced):]
			k := r.IntN(len(extra) + 1)
			kept = append(kept, extra[:k]...)
			if k > 0 && r.IntN(2) == 0 {
				g := 1 + r.IntN(min(k, 16))
				for i := len(kept) - g; i < len(kept); i++ {
					kept[i] = byte(r.Uint32())
				}
			}
		}
		n.data = kept
		n.synced = append([]byte(nil), kept...)
	}
}

func clean(name string) string { return path.Clean(name) }

// MkdirAll creates dir and its parents; directories are durable at once.
func (f *FS) MkdirAll(dir string, perm fs.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for d := clean(dir); !f.dirs[d]; d = path.Dir(d) {
		f.dirs[d] = true
	}
	return nil
}

// ReadDir lists the files in dir, sorted.
func (f *FS) ReadDir(dir string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir = clean(dir)
	if !f.dirs[dir] {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for name := range f.live {
		if path.Dir(name) == dir {
			names = append(names, path.Base(name))
		}
	}
	for d := range f.dirs {
		if d != dir && path.Dir(d) == dir {
			names = append(names, path.Base(d))
		}
	}
	sort.Strings(names)
	return names, nil
}

// Rename renames a file; the new name is durable after SyncDir.
func (f *FS) Rename(oldname, newname string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	oldname, newname = clean(oldname), clean(newname)
	if err := f.fault(OpRename, oldname); err != nil {
		return err
	}
	n, ok := f.live[oldname]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	delete(f.live, oldname)
	f.live[newname] = n
	return nil
}

// SyncDir makes the entries of dir as they are now survive a crash.
func (f *FS) SyncDir(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir = clean(dir)
	if err := f.fault(OpSyncDir, dir); err != nil {
		return err
	}
	for name := range f.durable {
		if path.Dir(name) == dir {
			delete(f.durable, name)
		}
	}
	for name, n := range f.live {
		if path.Dir(name) == dir {
			f.durable[name] = n
		}
	}
	return nil
}

// OpenFile opens a file with os.OpenFile's flags.
func (f *FS) OpenFile(name string, flag int, perm fs.FileMode) (audit.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name = clean(name)
	if err := f.fault(OpOpen, name); err != nil {
		return nil, err
	}
	if !f.dirs[path.Dir(name)] {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	n, ok := f.live[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		n = &node{mode: perm}
		f.live[name] = n
	}
	if flag&os.O_TRUNC != 0 {
		n.data = nil
	}
	return &File{fs: f, n: n, name: name, gen: f.gen, flag: flag}, nil
}

// Mode returns the permission bits name was created with.
func (f *FS) Mode(name string) (fs.FileMode, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.live[clean(name)]
	if !ok {
		return 0, false
	}
	return n.mode, true
}

// Bytes returns a copy of what a reader of name sees now.
func (f *FS) Bytes(name string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.live[clean(name)]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), n.data...), true
}

// Unsynced returns how many files hold writes that a crash would drop.
func (f *FS) Unsynced() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for name, n := range f.live {
		if string(n.data) != string(n.synced) || f.durable[name] != n {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// File is an open file of an FS.
type File struct {
	fs     *FS
	n      *node
	name   string
	gen    int
	flag   int
	pos    int64
	closed bool
}

func (h *File) check() error {
	if h.closed {
		return fs.ErrClosed
	}
	if h.gen != h.fs.gen {
		return ErrCrashed
	}
	return nil
}

func (h *File) writable() bool { return h.flag&(os.O_WRONLY|os.O_RDWR) != 0 }

// Read reads from the current offset.
func (h *File) Read(p []byte) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return 0, err
	}
	if h.pos >= int64(len(h.n.data)) {
		return 0, io.EOF
	}
	k := copy(p, h.n.data[h.pos:])
	h.pos += int64(k)
	return k, nil
}

// ReadAt reads at off.
func (h *File) ReadAt(p []byte, off int64) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return 0, err
	}
	if off >= int64(len(h.n.data)) {
		return 0, io.EOF
	}
	k := copy(p, h.n.data[off:])
	if k < len(p) {
		return k, io.EOF
	}
	return k, nil
}

// Write writes at the current offset, or at the end with O_APPEND.
func (h *File) Write(p []byte) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return 0, err
	}
	if !h.writable() {
		return 0, &fs.PathError{Op: "write", Path: h.name, Err: fs.ErrPermission}
	}
	if err := h.fs.fault(OpWrite, h.name); err != nil {
		return 0, err
	}
	if h.flag&os.O_APPEND != 0 {
		h.pos = int64(len(h.n.data))
	}
	end := h.pos + int64(len(p))
	if end > int64(len(h.n.data)) {
		h.n.data = append(h.n.data, make([]byte, end-int64(len(h.n.data)))...)
	}
	copy(h.n.data[h.pos:], p)
	h.pos = end
	return len(p), nil
}

// Sync makes the file's contents survive a crash (not its directory entry:
// see FS.SyncDir).
func (h *File) Sync() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return err
	}
	if err := h.fs.fault(OpSync, h.name); err != nil {
		return err
	}
	h.n.synced = append(h.n.synced[:0:0], h.n.data...)
	return nil
}

// Truncate changes the size of the file.
func (h *File) Truncate(size int64) error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return err
	}
	if err := h.fs.fault(OpTruncate, h.name); err != nil {
		return err
	}
	if size <= int64(len(h.n.data)) {
		h.n.data = h.n.data[:size:size]
	} else {
		h.n.data = append(h.n.data, make([]byte, size-int64(len(h.n.data)))...)
	}
	return nil
}

// Size returns the current size.
func (h *File) Size() (int64, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return 0, err
	}
	return int64(len(h.n.data)), nil
}

// Close closes the file.
func (h *File) Close() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return fs.ErrClosed
	}
	h.closed = true
	return nil
}

// String names the file.
func (h *File) String() string { return strings.TrimPrefix(h.name, "/") }
