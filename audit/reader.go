package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/tlog"
)

// Reader reads a log directory without the signing key and without writing
// to it, so it is safe beside a Custos that has the log open: it is what
// `custos audit replay`, `report` and `proof` read. It trusts nothing it
// reads: proofs it builds from the stored hashes are checked by VerifyProof
// against a signed checkpoint, and Verify is what checks the whole log.
type Reader struct {
	fs  FS
	dir string
	id  string
}

// OpenReader opens the log directory dir for reading; fsys nil means the
// operating system's file system.
func OpenReader(fsys FS, dir string) (*Reader, error) {
	if fsys == nil {
		fsys = OSFS{}
	}
	id, err := readOrigin(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read audit log %s: not a log directory: %w", dir, err)
	}
	if id == "" {
		return nil, fmt.Errorf("read audit log %s: the origin file is empty", dir)
	}
	return &Reader{fs: fsys, dir: dir, id: id}, nil
}

// ID returns the log id the directory's origin file names.
func (r *Reader) ID() string { return r.id }

// errStopScan ends a scan early; Scan does not return it.
var errStopScan = errors.New("stop scan")

// Scan calls fn with each event's index and bytes (valid only during the
// call), in index order, from index lo on. It stops without error at the end
// of the intact events: a tail being written, or torn by a crash. A
// non-nil error from fn ends the scan and is returned.
func (r *Reader) Scan(lo int64, fn func(index int64, rec []byte) error) error {
	segs, err := listSegments(r.fs, r.dir)
	if err != nil {
		return fmt.Errorf("read audit log %s: %w", r.dir, err)
	}
	next := int64(0)
	for i, first := range segs {
		if first != next {
			return fmt.Errorf("read audit log %s: segment %s starts at index %d, want %d", r.dir, segmentName(first), first, next)
		}
		if i+1 < len(segs) && segs[i+1] <= lo {
			next = segs[i+1]
			continue
		}
		f, err := openSegment(r.fs, r.dir, first)
		if err != nil {
			return fmt.Errorf("read audit log %s: %w", r.dir, err)
		}
		n, _, torn, err := scanSegment(f, first, func(idx int64, rec []byte) error {
			if idx < lo {
				return nil
			}
			return fn(idx, rec)
		})
		f.Close()
		if err == errStopScan {
			return nil
		}
		if err != nil {
			return err
		}
		if torn && i < len(segs)-1 {
			return fmt.Errorf("read audit log %s: segment %s is corrupt after index %d", r.dir, segmentName(first), first+n-1)
		}
		next = first + n
	}
	return nil
}

// Read returns the bytes of event index.
func (r *Reader) Read(index int64) ([]byte, error) {
	var rec []byte
	err := r.Scan(index, func(_ int64, b []byte) error {
		rec = append([]byte(nil), b...)
		return errStopScan
	})
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("audit log %s: index %d is not in the log", r.id, index)
	}
	return rec, nil
}

// Checkpoints returns the checkpoints stored in the directory, in the order
// they were written, parsed but not verified: OpenCheckpoint or VerifyProof
// checks their signatures.
func (r *Reader) Checkpoints() ([]SignedCheckpoint, error) {
	msgs, err := readCheckpoints(r.fs, r.dir)
	if err != nil {
		return nil, fmt.Errorf("read audit log %s: %w", r.dir, err)
	}
	out := make([]SignedCheckpoint, 0, len(msgs))
	for i, m := range msgs {
		text, err := noteText(m)
		if err != nil {
			return nil, fmt.Errorf("read audit log %s: checkpoint %d: %w", r.dir, i, err)
		}
		c, err := ParseCheckpoint(text)
		if err != nil {
			return nil, fmt.Errorf("read audit log %s: checkpoint %d: %w", r.dir, i, err)
		}
		out = append(out, SignedCheckpoint{Checkpoint: c, Note: m})
	}
	return out, nil
}

// Prove returns the proof that rec, the bytes of event index, is in the tree
// of checkpoint cp, built from the stored hashes (VerifyProof checks it, so
// they need not be trusted).
func (r *Reader) Prove(cp SignedCheckpoint, index int64, rec []byte) (*Proof, error) {
	if cp.Origin != r.id {
		return nil, fmt.Errorf("audit log %s: checkpoint is for log %q", r.id, cp.Origin)
	}
	if index < 0 || index >= cp.Size {
		return nil, fmt.Errorf("audit log %s: index %d is not covered by the checkpoint (size %d)", r.id, index, cp.Size)
	}
	f, err := r.fs.OpenFile(filepath.Join(r.dir, hashesFile), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("read audit log %s: %w", r.dir, err)
	}
	defer f.Close()
	p, err := tlog.ProveRecord(cp.Size, index, fileHashReader{f})
	if err != nil {
		return nil, fmt.Errorf("audit log %s: prove index %d: %w", r.id, index, err)
	}
	return &Proof{LogID: r.id, Index: index, Event: append([]byte(nil), rec...), Inclusion: p, Checkpoint: string(cp.Note)}, nil
}
