package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// open brings the directory to a consistent state and loads the tree.
func (l *Log) open() error {
	if err := l.fs.MkdirAll(l.dir, 0o700); err != nil {
		return err
	}
	segs, err := listSegments(l.fs, l.dir)
	if err != nil {
		return err
	}
	if err := l.checkOrigin(len(segs) > 0); err != nil {
		return err
	}
	if len(segs) == 0 {
		f, err := l.createSegment(0)
		if err != nil {
			return fmt.Errorf("create first segment: %w", err)
		}
		f.Close()
		segs = []int64{0}
	}
	for _, first := range segs[:len(segs)-1] {
		f, err := openSegment(l.fs, l.dir, first)
		if err != nil {
			return err
		}
		f.Close()
	}
	l.segs = segs

	// The last segment: cut a torn tail.
	first := segs[len(segs)-1]
	n, end, err := l.recoverLastSegment(first)
	if err != nil {
		return err
	}
	l.recover.Events = n
	f, err := l.fs.OpenFile(filepath.Join(l.dir, segmentName(first)), os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	l.seg, l.segFirst, l.segSize = f, first, end

	last, signedBy, err := l.recoverCheckpoints()
	if err != nil {
		return err
	}
	if last.Size > n {
		return fmt.Errorf("the last checkpoint covers %d events but the log holds %d: events %d to %d are lost or were cut", last.Size, n, n, last.Size-1)
	}
	l.recover.Checkpoint = last.Checkpoint
	if err := l.recoverHashes(n, last); err != nil {
		return err
	}
	l.head = tlog.Tree{N: n, Hash: l.front.root(n)}
	l.ck.key = l.opts.Key
	if last.Note != nil {
		l.ck.set(last)
	}
	if last.Note != nil && signedBy != l.opts.Key {
		// signedBy is the previous key: hand over.
		l.ck.key = signedBy
		l.ck.mu.Lock()
		_, err := l.ck.rotate(l.opts.Key)
		l.ck.mu.Unlock()
		if err != nil {
			return err
		}
		l.recover.Rotated = true
	}
	return nil
}

// checkOrigin checks the log id recorded in the directory, or records it.
func (l *Log) checkOrigin(hasSegments bool) error {
	name := filepath.Join(l.dir, originFile)
	f, err := l.fs.OpenFile(name, os.O_RDONLY, 0)
	if err == nil {
		b, err := io.ReadAll(io.LimitReader(f, 1024))
		f.Close()
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(b)); got != l.id {
			return fmt.Errorf("directory holds log %q, the signing key is for log %q", got, l.id)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if hasSegments {
		return errors.New("segments but no origin file")
	}
	tmp := name + ".tmp"
	f, err = l.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(l.id + "\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(tmp, name)
	}
	if err == nil {
		err = l.fs.SyncDir(l.dir)
	}
	return err
}

// recoverLastSegment scans the last segment, cuts a torn tail, and returns
// the number of events in the log and where the segment's frames end.
func (l *Log) recoverLastSegment(first int64) (int64, int64, error) {
	name := filepath.Join(l.dir, segmentName(first))
	f, err := l.fs.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	v, err := readHeader(f, segmentMagic)
	if err == errTorn {
		// Created but its header never reached the disk: start it again.
		if err := f.Truncate(0); err != nil {
			return 0, 0, err
		}
		if _, err := f.Write(fileHeader(segmentMagic, uint64(first))); err != nil {
			return 0, 0, err
		}
		return first, headerSize, f.Sync()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("segment %s: %w", segmentName(first), err)
	}
	if int64(v) != first {
		return 0, 0, fmt.Errorf("segment %s: header says first index %d", segmentName(first), v)
	}
	count, end, torn, err := scanSegment(f, first, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("segment %s: %w", segmentName(first), err)
	}
	if torn {
		size, err := f.Size()
		if err != nil {
			return 0, 0, err
		}
		l.recover.TornBytes += size - end
		if err := f.Truncate(end); err != nil {
			return 0, 0, fmt.Errorf("cut torn tail of %s: %w", segmentName(first), err)
		}
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
	}
	return first + count, end, nil
}

// recoverCheckpoints opens the checkpoints file, cuts a torn tail, and
// returns the last checkpoint and the key that signed it.
func (l *Log) recoverCheckpoints() (SignedCheckpoint, *SigningKey, error) {
	name := filepath.Join(l.dir, checkpointsFile)
	f, err := l.fs.OpenFile(name, os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if f, err = l.fs.OpenFile(name, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return SignedCheckpoint{}, nil, err
		}
		l.ck.file = f
		if _, err := f.Write(fileHeader(checkpointMagic, 0)); err != nil {
			return SignedCheckpoint{}, nil, err
		}
		if err := f.Sync(); err != nil {
			return SignedCheckpoint{}, nil, err
		}
		return SignedCheckpoint{}, nil, l.fs.SyncDir(l.dir)
	}
	if err != nil {
		return SignedCheckpoint{}, nil, err
	}
	l.ck.file = f
	if _, err := readHeader(f, checkpointMagic); err == errTorn {
		if err := f.Truncate(0); err != nil {
			return SignedCheckpoint{}, nil, err
		}
		if _, err := f.Write(fileHeader(checkpointMagic, 0)); err != nil {
			return SignedCheckpoint{}, nil, err
		}
		return SignedCheckpoint{}, nil, f.Sync()
	} else if err != nil {
		return SignedCheckpoint{}, nil, fmt.Errorf("checkpoints: %w", err)
	}
	var lastMsg []byte
	fr := newFrameReader(io.NewSectionReader(f, headerSize, 1<<62), headerSize)
	var end int64
	for {
		p, off, err := fr.next()
		end = off
		if err == io.EOF {
			break
		}
		if err == errTorn {
			size, serr := f.Size()
			if serr != nil {
				return SignedCheckpoint{}, nil, serr
			}
			if err := f.Truncate(end); err != nil {
				return SignedCheckpoint{}, nil, err
			}
			if err := f.Sync(); err != nil {
				return SignedCheckpoint{}, nil, err
			}
			l.recover.TornBytes += size - end
			break
		}
		if err != nil {
			return SignedCheckpoint{}, nil, fmt.Errorf("checkpoints: %w", err)
		}
		lastMsg = append(lastMsg[:0], p...)
	}
	if lastMsg == nil {
		return SignedCheckpoint{}, nil, nil
	}
	keys := []*SigningKey{l.opts.Key}
	if l.opts.PreviousKey != nil {
		keys = append(keys, l.opts.PreviousKey)
	}
	for _, k := range keys {
		v, err := note.NewVerifier(k.VerifierKey())
		if err != nil {
			return SignedCheckpoint{}, nil, err
		}
		n, err := note.Open(lastMsg, note.VerifierList(v))
		if err != nil {
			continue
		}
		c, err := ParseCheckpoint(n.Text)
		if err != nil {
			return SignedCheckpoint{}, nil, fmt.Errorf("last checkpoint: %w", err)
		}
		if c.Origin != l.id {
			return SignedCheckpoint{}, nil, fmt.Errorf("last checkpoint is for log %q", c.Origin)
		}
		return SignedCheckpoint{Checkpoint: c, Note: lastMsg}, k, nil
	}
	return SignedCheckpoint{}, nil, errors.New("the last checkpoint is not signed by the signing key (nor by the previous key, if one was given): to change keys, give the old one as the previous key")
}

// recoverHashes makes the stored hashes cover exactly the n events: those
// after the last checkpoint (or whatever a crash left unwritten) are
// recomputed from the events, and the tree at the checkpoint's size must
// match its root.
func (l *Log) recoverHashes(n int64, last SignedCheckpoint) error {
	f, err := l.fs.OpenFile(filepath.Join(l.dir, hashesFile), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	l.hashes = f
	if err := l.fs.SyncDir(l.dir); err != nil {
		return err
	}
	size, err := f.Size()
	if err != nil {
		return err
	}
	have := size / tlog.HashSize
	// m: the events whose stored hashes are all there, up to the checkpoint.
	m := sort.Search(int(min(n, last.Size)+1), func(i int) bool { return tlog.StoredHashCount(int64(i)) > have }) - 1
	from := int64(max(m, 0))
	if err := f.Truncate(tlog.StoredHashCount(from) * tlog.HashSize); err != nil {
		return err
	}
	r := fileHashReader{f}
	front, err := loadFrontier(from, r)
	if err != nil {
		return fmt.Errorf("read stored hashes: %w", err)
	}
	check := func(size int64) error {
		if last.Note != nil && size == last.Size && front.root(size) != last.Root {
			return fmt.Errorf("the tree of the first %d events does not match the last checkpoint's root: the log was altered, or its stored hashes are corrupt (run audit verify)", size)
		}
		return nil
	}
	if err := check(from); err != nil {
		return err
	}
	var hs []tlog.Hash
	var buf []byte
	flush := func() error {
		buf = buf[:0]
		for _, h := range hs {
			buf = append(buf, h[:]...)
		}
		hs = hs[:0]
		_, err := f.Write(buf)
		return err
	}
	err = l.scanEvents(from, n, func(idx int64, rec []byte) error {
		hs = front.add(idx, tlog.RecordHash(rec), hs)
		if err := check(idx + 1); err != nil {
			return err
		}
		if len(hs) >= 1<<14 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	l.recover.RehashedEvents = n - from
	l.n, l.front = n, front
	return nil
}

// scanEvents calls fn for the events from index lo up to hi, in order.
func (l *Log) scanEvents(lo, hi int64, fn func(idx int64, rec []byte) error) error {
	l.mu.Lock()
	segs := append([]int64(nil), l.segs...)
	l.mu.Unlock()
	i := sort.Search(len(segs), func(i int) bool { return segs[i] > lo }) - 1
	if i < 0 {
		return fmt.Errorf("no segment holds index %d", lo)
	}
	next := lo
	stop := errors.New("stop")
	for ; i < len(segs) && next < hi; i++ {
		f, err := openSegment(l.fs, l.dir, segs[i])
		if err != nil {
			return err
		}
		_, _, _, err = scanSegment(f, segs[i], func(idx int64, rec []byte) error {
			if idx < next {
				return nil
			}
			if idx >= hi {
				return stop
			}
			next = idx + 1
			return fn(idx, rec)
		})
		f.Close()
		if err != nil && err != stop {
			return err
		}
	}
	if next < hi {
		return fmt.Errorf("events %d to %d are missing from the segments", next, hi-1)
	}
	return nil
}

// fileHashReader reads stored hashes from the hashes file.
type fileHashReader struct{ f io.ReaderAt }

func (r fileHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if _, err := r.f.ReadAt(out[i][:], x*tlog.HashSize); err != nil {
			return nil, fmt.Errorf("stored hash %d: %w", x, err)
		}
	}
	return out, nil
}
