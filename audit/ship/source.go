package ship

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/custos-dev/custos/audit"
)

// The shipper reads the log directory sequentially, in the on-disk format of
// docs/audit.md ("On disk"): (*audit.Log).Read scans a segment from its start
// for every index, which is quadratic over a backlog. Only what the log says
// is durable (Size) is read, and every event read is decoded and must name the
// log and the index expected, so a reader out of step with the format fails
// loudly instead of shipping the wrong bytes.

const (
	headerSize      = 16
	frameHeaderSize = 8
	segmentPrefix   = "seg-"
)

var (
	segmentMagic    = []byte("CUSTSEG1")
	checkpointMagic = []byte("CUSTCKP1")
	castagnoli      = crc32.MakeTable(crc32.Castagnoli)
	errIncomplete   = errors.New("incomplete frame")
)

// readFrame reads one frame at the reader's position: the payload (valid
// until the next call) and its size on disk. errIncomplete means the bytes
// there are not (yet) a whole intact frame.
func readFrame(r *bufio.Reader, buf []byte) ([]byte, int64, error) {
	var h [frameHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, 0, errIncomplete
		}
		return nil, 0, err
	}
	n := binary.BigEndian.Uint32(h[:4])
	if n == 0 || n > audit.MaxRecordSize {
		return nil, 0, errIncomplete
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	p := buf[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, 0, errIncomplete
		}
		return nil, 0, err
	}
	c := crc32.Update(0, castagnoli, h[:4])
	if binary.BigEndian.Uint32(h[4:]) != crc32.Update(c, castagnoli, p) {
		return nil, 0, errIncomplete
	}
	return p, frameHeaderSize + int64(n), nil
}

// eventSource reads events in index order from a log directory.
type eventSource struct {
	dir   string
	logID string
	f     *os.File
	first int64 // first index of the open segment
	next  int64 // index of the event at off
	off   int64
	buf   []byte
}

// record is one event to ship.
type record struct {
	index   int64
	session string
	value   []byte
}

// read returns up to max events from index lo, all below hi (the log's
// durable size).
func (s *eventSource) read(lo, hi int64, max int) ([]record, error) {
	if lo >= hi {
		return nil, nil
	}
	if s.f == nil || s.next != lo {
		if err := s.seek(lo); err != nil {
			return nil, err
		}
	}
	var out []record
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, s.off, 1<<62), 1<<16)
	for s.next < hi && len(out) < max {
		p, n, err := readFrame(r, s.buf)
		if err == errIncomplete {
			// The end of a segment: the next one starts at s.next.
			if err := s.open(s.next); err != nil {
				return out, fmt.Errorf("event %d: %w", s.next, err)
			}
			r = bufio.NewReaderSize(io.NewSectionReader(s.f, s.off, 1<<62), 1<<16)
			continue
		}
		if err != nil {
			return out, fmt.Errorf("read event %d: %w", s.next, err)
		}
		s.buf = p[:cap(p)]
		rec, err := s.check(p)
		if err != nil {
			return out, err
		}
		out = append(out, rec)
		s.off += n
		s.next++
	}
	return out, nil
}

// check decodes an event and checks it is the one expected.
func (s *eventSource) check(p []byte) (record, error) {
	e, err := audit.DecodeEvent(p)
	if err != nil {
		return record{}, fmt.Errorf("event %d in %s: %w", s.next, s.dir, err)
	}
	if e.LogID != s.logID || e.Index != s.next {
		return record{}, fmt.Errorf("event %d in %s says it is %s/%d", s.next, s.dir, e.LogID, e.Index)
	}
	return record{index: s.next, session: e.SessionID, value: bytes.Clone(p)}, nil
}

// seek positions the source at index idx.
func (s *eventSource) seek(idx int64) error {
	segs, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	i := sort.Search(len(segs), func(i int) bool { return segs[i] > idx }) - 1
	if i < 0 {
		return fmt.Errorf("no segment in %s holds event %d", s.dir, idx)
	}
	if err := s.open(segs[i]); err != nil {
		return err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, s.off, 1<<62), 1<<16)
	for s.next < idx {
		_, n, err := readFrame(r, s.buf)
		if err != nil {
			return fmt.Errorf("seek to event %d in %s: event %d: %w", idx, s.dir, s.next, err)
		}
		s.off += n
		s.next++
	}
	return nil
}

// open opens the segment whose first index is first.
func (s *eventSource) open(first int64) error {
	name := filepath.Join(s.dir, fmt.Sprintf("%s%020d", segmentPrefix, first))
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	h := make([]byte, headerSize)
	if _, err := f.ReadAt(h, 0); err != nil {
		f.Close()
		return fmt.Errorf("%s: header: %w", name, err)
	}
	if !bytes.Equal(h[:8], segmentMagic) || int64(binary.BigEndian.Uint64(h[8:])) != first {
		f.Close()
		return fmt.Errorf("%s: bad header", name)
	}
	s.close()
	s.f, s.first, s.next, s.off = f, first, first, headerSize
	return nil
}

func (s *eventSource) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// listSegments returns the segments' first indexes, ascending.
func listSegments(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []int64
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), segmentPrefix)
		if !ok || len(s) != 20 {
			continue
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			segs = append(segs, n)
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	return segs, nil
}

// signedCheckpoint is one checkpoint frame read from the checkpoints file.
type signedCheckpoint struct {
	audit.Checkpoint
	note []byte
	end  int64 // offset after its frame
}

// readCheckpoints returns the intact checkpoint frames of dir's checkpoints
// file from offset off (0: the start), at most max. A frame still being
// written ends the list.
func readCheckpoints(dir string, off int64, max int) ([]signedCheckpoint, error) {
	f, err := os.Open(filepath.Join(dir, "checkpoints"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := make([]byte, headerSize)
	if _, err := f.ReadAt(h, 0); err == io.EOF {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	if !bytes.Equal(h[:8], checkpointMagic) {
		return nil, errors.New("checkpoints: bad header")
	}
	if off < headerSize {
		off = headerSize
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, off, 1<<62), 1<<16)
	var out []signedCheckpoint
	var buf []byte
	for len(out) < max {
		p, n, err := readFrame(r, buf)
		if err == errIncomplete {
			break
		}
		if err != nil {
			return out, fmt.Errorf("checkpoints at offset %d: %w", off, err)
		}
		buf = p[:cap(p)]
		cp, err := parseNote(p)
		if err != nil {
			return out, fmt.Errorf("checkpoints at offset %d: %w", off, err)
		}
		off += n
		out = append(out, signedCheckpoint{Checkpoint: cp, note: bytes.Clone(p), end: off})
	}
	return out, nil
}

// parseNote parses a signed checkpoint's text, without its signatures.
func parseNote(msg []byte) (audit.Checkpoint, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return audit.Checkpoint{}, errors.New("not a signed note")
	}
	return audit.ParseCheckpoint(string(msg[:i+1]))
}
