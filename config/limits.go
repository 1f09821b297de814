package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits on the input. A configuration file is read by people's tools and
// rewritten under a running Custos, so a hostile or broken one must be refused
// in bounded time and memory, never take the process down: a few kilobytes of
// YAML aliases can stand for billions of nodes, and each of them for an error.
const (
	// MaxFileSize is the largest configuration accepted, in bytes (1 MiB).
	MaxFileSize = 1 << 20
	// MaxNodes is the most YAML nodes a configuration may have, counting
	// an alias as every node of what it refers to, as decoding visits them.
	MaxNodes = 100_000
	// MaxErrors is the most problems [Parse] lists; beyond it the list ends
	// with a count of those left out.
	MaxErrors = 50
	// maxShown is the most bytes of a value from the file quoted in a
	// message; a longer value is cut and ends with "…".
	maxShown = 64
)

// Errors returned by [Load], wrapped, for a file it refuses to read.
var (
	// ErrNotRegularFile is a path that names something other than a regular
	// file (a FIFO, a device, a directory, a socket), or a symbolic link to
	// one: a FIFO would block until a writer came and a device such as
	// /dev/zero never ends.
	ErrNotRegularFile = errors.New("not a regular file")
	// ErrFileTooLarge is a file larger than [MaxFileSize].
	ErrFileTooLarge = errors.New("file too large")
)

// readFile returns the content of the configuration file at path, refusing,
// before reading anything, a path that is not a regular file or is larger
// than MaxFileSize.
func readFile(path string) ([]byte, error) {
	// Stat first so that a device is not even opened (opening some has side
	// effects), then check the opened file again: the path may have changed
	// in between.
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := checkFile(st); err != nil {
		return nil, err
	}
	// O_NONBLOCK: opening a FIFO put there since the Stat must not wait for a
	// writer. It changes nothing for a regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkFile(st); err != nil {
		return nil, err
	}
	// The size is checked again as read: the file may grow, and some
	// regular files (under /proc) report no size.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: more than %s, the limit", ErrFileTooLarge, sizeLimit)
	}
	return data, nil
}

// sizeLimit is MaxFileSize as messages show it.
var sizeLimit = fmt.Sprintf("%d bytes (1 MiB)", MaxFileSize)

// checkFile returns why a file described by st is not read, or nil.
func checkFile(st fs.FileInfo) error {
	m := st.Mode()
	if !m.IsRegular() {
		return fmt.Errorf("%w (%s); give the path of a YAML file", ErrNotRegularFile, fileKind(m))
	}
	if st.Size() > MaxFileSize {
		return fmt.Errorf("%w: %d bytes, more than %s, the limit", ErrFileTooLarge, st.Size(), sizeLimit)
	}
	return nil
}

// fileKind names the kind of a file that is not regular.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "file mode " + m.String()
}

// checkNodes walks the document under n as decoding will, following
// aliases, and returns the problem with a document that has more than
// MaxNodes nodes or an alias inside the node it refers to, or nil. The walk
// stops at the limit, so a small file whose aliases stand for billions of
// nodes costs no more than MaxNodes steps.
func checkNodes(n *yaml.Node) *Error {
	w := &nodeWalk{open: map[*yaml.Node]bool{}}
	w.walk(n, nil)
	return w.err
}

// nodeWalk is the state of checkNodes.
type nodeWalk struct {
	// count is the number of nodes visited so far.
	count int
	// open holds the anchored nodes being walked: an alias to one of them
	// would make the walk, and decoding, endless.
	open map[*yaml.Node]bool
	err  *Error
}

// walk visits n, reached through the alias via unless via is nil, and its
// content; it returns false once a problem is found.
func (w *nodeWalk) walk(n, via *yaml.Node) bool {
	w.count++
	if w.count > MaxNodes {
		if via == nil {
			w.err = &Error{Line: n.Line, Msg: fmt.Sprintf("the configuration has more than %d YAML nodes, the limit", MaxNodes)}
		} else {
			w.err = &Error{Line: via.Line, Msg: fmt.Sprintf("alias *%s expands the configuration to more than %d YAML nodes, the limit", cut(via.Value), MaxNodes)}
		}
		return false
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return true
		}
		if w.open[n.Alias] {
			w.err = &Error{Line: n.Line, Msg: fmt.Sprintf("alias *%s refers to a node that contains it", cut(n.Value))}
			return false
		}
		if via == nil {
			// The first alias on the way is the one written in the
			// document: the line to show.
			via = n
		}
		return w.walk(n.Alias, via)
	}
	if n.Anchor != "" {
		w.open[n] = true
		defer delete(w.open, n)
	}
	for _, c := range n.Content {
		if !w.walk(c, via) {
			return false
		}
	}
	return true
}

// cut returns s, or its first maxShown bytes (whole characters) followed by
// "…" when it is longer.
func cut(s string) string {
	if len(s) <= maxShown {
		return s
	}
	i := maxShown
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// quote quotes a value from the file for a message, cut to maxShown bytes.
func quote(s string) string {
	return strconv.Quote(cut(s))
}
