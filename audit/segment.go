package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A log directory holds:
//
//	origin                        the log id, one line
//	seg-<first index, 20 digits>  segments: a header, then framed events
//	hashes                        the tree's stored hashes (tlog order), 32 bytes each
//	checkpoints                   a header, then framed signed checkpoints
//
// Every file only grows (a torn tail is cut at recovery); nothing is deleted.

const (
	originFile      = "origin"
	hashesFile      = "hashes"
	checkpointsFile = "checkpoints"
	segmentPrefix   = "seg-"
	headerSize      = 16
)

var (
	segmentMagic    = [8]byte{'C', 'U', 'S', 'T', 'S', 'E', 'G', '1'}
	checkpointMagic = [8]byte{'C', 'U', 'S', 'T', 'C', 'K', 'P', '1'}
)

func segmentName(first int64) string { return fmt.Sprintf("%s%020d", segmentPrefix, first) }

// parseSegmentName returns the first index of a segment file name.
func parseSegmentName(name string) (int64, bool) {
	s, ok := strings.CutPrefix(name, segmentPrefix)
	if !ok || len(s) != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func fileHeader(magic [8]byte, v uint64) []byte {
	h := make([]byte, headerSize)
	copy(h, magic[:])
	binary.BigEndian.PutUint64(h[8:], v)
	return h
}

// readHeader reads a file header; a file shorter than a header is errTorn.
func readHeader(f io.ReaderAt, magic [8]byte) (uint64, error) {
	h := make([]byte, headerSize)
	if _, err := f.ReadAt(h, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, errTorn
		}
		return 0, err
	}
	if [8]byte(h[:8]) != magic {
		return 0, errors.New("bad file header")
	}
	return binary.BigEndian.Uint64(h[8:]), nil
}

// listSegments returns the first indexes of the segments in dir, ascending,
// checking that they start at 0.
func listSegments(fsys FS, dir string) ([]int64, error) {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []int64
	for _, name := range names {
		if first, ok := parseSegmentName(name); ok {
			segs = append(segs, first)
		} else if strings.HasPrefix(name, segmentPrefix) {
			return nil, fmt.Errorf("unexpected file %s", name)
		}
	}
	// Names are sorted and fixed-width, so segs ascend.
	if len(segs) > 0 && segs[0] != 0 {
		return nil, fmt.Errorf("first segment starts at index %d, not 0: segments are missing", segs[0])
	}
	return segs, nil
}

// openSegment opens a segment for reading and checks its header.
func openSegment(fsys FS, dir string, first int64) (File, error) {
	f, err := fsys.OpenFile(filepath.Join(dir, segmentName(first)), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	v, err := readHeader(f, segmentMagic)
	if err == nil && int64(v) != first {
		err = fmt.Errorf("header says first index %d", v)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("segment %s: %w", segmentName(first), err)
	}
	return f, nil
}

// scanSegment reads the events of a segment in order, calling fn with each
// event's bytes (valid only during the call) and index. It returns the number
// of events and the offset where intact frames end; torn reports whether
// bytes after that offset are not an intact frame.
func scanSegment(f File, first int64, fn func(index int64, rec []byte) error) (n int64, end int64, torn bool, err error) {
	fr := newFrameReader(io.NewSectionReader(f, headerSize, 1<<62), headerSize)
	for {
		p, off, err := fr.next()
		if err == io.EOF {
			return n, off, false, nil
		}
		if err == errTorn {
			return n, off, true, nil
		}
		if err != nil {
			return n, off, false, err
		}
		if fn != nil {
			if err := fn(first+n, p); err != nil {
				return n, off, false, err
			}
		}
		n++
	}
}
