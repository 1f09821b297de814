package audit

import (
	"encoding/binary"
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

// VerifyError says where a log first fails verification.
type VerifyError struct {
	LogID string
	// Index is the first event index found bad, or -1 when the fault is in
	// a checkpoint alone.
	Index int64
	// Checkpoint is the size of the checkpoint involved, or -1.
	Checkpoint int64
	Reason     string
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "audit log %s", e.LogID)
	if e.Index >= 0 {
		fmt.Fprintf(&b, ": index %d", e.Index)
	}
	if e.Checkpoint >= 0 {
		fmt.Fprintf(&b, ": checkpoint at size %d", e.Checkpoint)
	}
	return b.String() + ": " + e.Reason
}

// Summary is what a successful verification checked.
type Summary struct {
	LogID string
	// Events is how many events were verified.
	Events int64
	// Checkpoints is how many signed checkpoints were checked; Covered is the
	// largest size among them: events after it are intact as stored but not
	// yet committed to by a signature.
	Checkpoints int
	Covered     int64
	// Keys are the verifier keys that signed the checkpoints, in the order
	// they took over.
	Keys []string
	// TornBytes is a partly written tail after the last intact event (left by
	// a crash before recovery; never acknowledged).
	TornBytes int64
}

func (s *Summary) String() string {
	return fmt.Sprintf("log %s: %d events intact, %d checkpoints verified (the latest covers %d events), %d signing keys",
		s.LogID, s.Events, s.Checkpoints, s.Covered, len(s.Keys))
}

// Checker verifies one log from its checkpoints and its events, whatever they
// were read from (a log directory, Kafka topics). Give it every checkpoint
// first (AddCheckpoint), then every event in index order (AddEvent), then
// call Finish. It never trusts stored hashes: the tree is rebuilt from the
// event bytes, and the tree hash at each checkpoint's size must equal the
// checkpoint's root, which also proves each checkpoint consistent with every
// earlier one.
type Checker struct {
	logID   string
	keys    map[string]*chainKey // by verifier key
	order   []string
	pending [][]byte
	cps     []*checkedCheckpoint
	started bool
	next    int   // next checkpoint (in cps, by size) to compare
	good    int64 // size of the last checkpoint matched
	n       int64
	front   frontier
	err     *VerifyError
	torn    int64
	// leaf, when set, is called for each event after its index is checked.
	leaf func(idx int64, rec []byte) error
}

type chainKey struct {
	v     note.Verifier
	vkey  string
	from  int64
	until int64 // -1: still in force
}

type checkedCheckpoint struct {
	SignedCheckpoint
	signers []string // verifier keys whose signatures verified
}

// NewChecker returns a checker for log logID. keys are the verifier keys the
// examiner trusts; those not named logID are ignored. A key handed over to
// by a checkpoint that a trusted key signed (see Checkpoint.NextKey) is
// followed.
func NewChecker(logID string, keys []string) (*Checker, error) {
	c := &Checker{logID: logID, keys: map[string]*chainKey{}, good: 0}
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("verifier key: %w", err)
		}
		if v.Name() != logID {
			continue
		}
		if _, ok := c.keys[k]; !ok {
			c.keys[k] = &chainKey{v: v, vkey: k, from: 0, until: -1}
			c.order = append(c.order, k)
		}
	}
	if len(c.keys) == 0 {
		return nil, fmt.Errorf("no verifier key for log %q", logID)
	}
	return c, nil
}

func (c *Checker) fail(index, cp int64, format string, args ...any) error {
	if c.err == nil {
		c.err = &VerifyError{LogID: c.logID, Index: index, Checkpoint: cp, Reason: fmt.Sprintf(format, args...)}
	}
	return c.err
}

// AddCheckpoint adds a signed checkpoint, from the log directory or from
// elsewhere (a Kafka topic, a proof an agent kept). Duplicates are harmless.
func (c *Checker) AddCheckpoint(msg []byte) error {
	if c.started {
		return errors.New("checker: checkpoint after the first event")
	}
	c.pending = append(c.pending, append([]byte(nil), msg...))
	return nil
}

// resolve verifies the checkpoints' signatures, following key hand-overs,
// and sorts them by size.
func (c *Checker) resolve() error {
	c.started = true
	// Every key a checkpoint announces is a candidate; it counts only once
	// a trusted key handed over to it.
	cands := map[string]note.Verifier{}
	for k, ck := range c.keys {
		cands[k] = ck.v
	}
	type parsed struct {
		msg  []byte
		cp   Checkpoint
		sigs map[string]bool
	}
	var all []parsed
	seen := map[string]bool{}
	for _, msg := range c.pending {
		if seen[string(msg)] {
			continue
		}
		seen[string(msg)] = true
		text, err := noteText(msg)
		if err != nil {
			return c.fail(-1, -1, "a checkpoint is not a signed note")
		}
		cp, err := ParseCheckpoint(text)
		if err != nil {
			return c.fail(-1, -1, "%v", err)
		}
		if cp.Origin != c.logID {
			return c.fail(-1, cp.Size, "checkpoint of another log (%q)", cp.Origin)
		}
		if cp.NextKey != "" {
			if v, err := note.NewVerifier(cp.NextKey); err == nil && v.Name() == c.logID {
				cands[cp.NextKey] = v
			}
		}
		all = append(all, parsed{msg: msg, cp: cp})
	}
	for i := range all {
		all[i].sigs = map[string]bool{}
		for k, v := range cands {
			if _, err := note.Open(all[i].msg, note.VerifierList(v)); err == nil {
				all[i].sigs[k] = true
			}
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].cp.Size < all[j].cp.Size })

	// Follow hand-overs in size order: a checkpoint signed by a key in force
	// and by the key it names hands over to it.
	inForce := func(k string, size int64) bool {
		ck := c.keys[k]
		return ck != nil && ck.from <= size && (ck.until < 0 || size <= ck.until)
	}
	for _, p := range all {
		if p.cp.NextKey == "" || !p.sigs[p.cp.NextKey] {
			continue
		}
		var by []string
		for k := range p.sigs {
			if k != p.cp.NextKey && inForce(k, p.cp.Size) {
				by = append(by, k)
			}
		}
		if len(by) == 0 {
			continue
		}
		for _, k := range by {
			c.keys[k].until = p.cp.Size
		}
		if ck, ok := c.keys[p.cp.NextKey]; ok {
			ck.until = -1
		} else {
			c.keys[p.cp.NextKey] = &chainKey{v: cands[p.cp.NextKey], vkey: p.cp.NextKey, from: p.cp.Size, until: -1}
			c.order = append(c.order, p.cp.NextKey)
		}
	}
	for _, p := range all {
		var signers []string
		for k := range p.sigs {
			if inForce(k, p.cp.Size) {
				signers = append(signers, k)
			}
		}
		if len(signers) == 0 {
			why := "not signed by a trusted key"
			for k := range p.sigs {
				if c.keys[k] != nil {
					why = "signed by a key that had handed over to another before this size"
				}
			}
			return c.fail(-1, p.cp.Size, "%s", why)
		}
		sort.Strings(signers)
		c.cps = append(c.cps, &checkedCheckpoint{SignedCheckpoint{Checkpoint: p.cp, Note: p.msg}, signers})
	}
	for i := 1; i < len(c.cps); i++ {
		a, b := c.cps[i-1], c.cps[i]
		if a.Size == b.Size && a.Root != b.Root {
			return c.fail(-1, a.Size, "fork: two signed checkpoints of this size with different roots")
		}
	}
	// An empty tree has one root.
	for c.next < len(c.cps) && c.cps[c.next].Size == 0 {
		if c.cps[c.next].Root != (tlog.Hash{}) {
			return c.fail(-1, 0, "root of an empty tree is not zero")
		}
		c.next++
	}
	return nil
}

// AddEvent adds the next event's bytes, in index order.
func (c *Checker) AddEvent(rec []byte) error {
	if c.err != nil {
		return c.err
	}
	if !c.started {
		if err := c.resolve(); err != nil {
			return err
		}
	}
	idx := c.n
	e, err := DecodeEvent(rec)
	if err != nil {
		return c.fail(idx, -1, "not a valid event: %v", err)
	}
	switch {
	case e.LogID != c.logID:
		return c.fail(idx, -1, "event of another log (%q)", e.LogID)
	case e.Index > idx:
		return c.fail(idx, -1, "event says index %d: events are missing (deleted) or out of order", e.Index)
	case e.Index < idx:
		return c.fail(idx, -1, "event says index %d: events are out of order or repeated", e.Index)
	}
	if c.leaf != nil {
		if err := c.leaf(idx, rec); err != nil {
			return err
		}
	}
	c.front.add(idx, tlog.RecordHash(rec), nil)
	c.n++
	for c.next < len(c.cps) && c.cps[c.next].Size == c.n {
		cp := c.cps[c.next]
		if c.front.root(c.n) != cp.Root {
			return c.fail(c.good, cp.Size, "the events from index %d to %d do not match the signed root: one of them was altered, removed or reordered", c.good, cp.Size-1)
		}
		c.good = cp.Size
		c.next++
	}
	return nil
}

// Finish checks that no checkpoint covers more events than were added and
// returns the summary.
func (c *Checker) Finish() (*Summary, error) {
	if c.err != nil {
		return nil, c.err
	}
	if !c.started {
		if err := c.resolve(); err != nil {
			return nil, err
		}
	}
	if c.next < len(c.cps) {
		cp := c.cps[len(c.cps)-1]
		return nil, c.fail(c.n, cp.Size, "a signed checkpoint covers %d events but only %d are here: events from index %d on were cut or deleted", cp.Size, c.n, c.n)
	}
	s := &Summary{LogID: c.logID, Events: c.n, Checkpoints: len(c.cps), TornBytes: c.torn}
	if len(c.cps) > 0 {
		s.Covered = c.cps[len(c.cps)-1].Size
	}
	used := map[string]bool{}
	for _, cp := range c.cps {
		for _, k := range cp.signers {
			used[k] = true
		}
	}
	for _, k := range c.order {
		if used[k] {
			s.Keys = append(s.Keys, k)
		}
	}
	return s, nil
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Keys are the trusted verifier keys (one per log id; a log's later keys
	// are followed from its first).
	Keys []string
	// Checkpoints are signed checkpoints from elsewhere (the Kafka topic, a
	// proof): a rewritten directory is caught by those already shipped.
	Checkpoints [][]byte
	// FS is the file system; nil means the operating system's.
	FS FS
}

// Verify checks the log in dir: every event's bytes against its index and
// the Merkle tree rebuilt from them, every checkpoint's signature (following
// key hand-overs) and root, forks, and the hashes stored beside the events.
// It returns a summary, or a *VerifyError naming the first bad index.
func Verify(dir string, opts VerifyOptions) (*Summary, error) {
	fsys := opts.FS
	if fsys == nil {
		fsys = OSFS{}
	}
	id, err := readOrigin(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", dir, err)
	}
	c, err := NewChecker(id, opts.Keys)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", dir, err)
	}
	cps, err := readCheckpoints(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", dir, err)
	}
	for _, m := range append(cps, opts.Checkpoints...) {
		if err := c.AddCheckpoint(m); err != nil {
			return nil, err
		}
	}
	if err := c.resolve(); err != nil {
		return nil, err
	}
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", dir, err)
	}
	hf, err := fsys.OpenFile(filepath.Join(dir, hashesFile), os.O_RDONLY, 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("verify %s: %w", dir, err)
	}
	if hf != nil {
		defer hf.Close()
	}
	if hf != nil {
		var stored [tlog.HashSize]byte
		c.leaf = func(idx int64, rec []byte) error {
			// The stored leaf hash is not trusted, only compared: it names
			// the altered event when the tree can only name a range.
			if _, err := hf.ReadAt(stored[:], tlog.StoredHashIndex(0, idx)*tlog.HashSize); err == nil && tlog.Hash(stored) != tlog.RecordHash(rec) {
				return c.fail(idx, -1, "event bytes differ from the leaf hash stored when it was appended: the event was altered")
			}
			return nil
		}
	}
	for i, first := range segs {
		if first != c.n {
			return nil, c.fail(c.n, -1, "segment %s starts at index %d: events are missing", segmentName(first), first)
		}
		f, err := openSegment(fsys, dir, first)
		if err != nil {
			return nil, c.fail(c.n, -1, "%v", err)
		}
		_, end, torn, err := scanSegment(f, first, func(_ int64, rec []byte) error { return c.AddEvent(rec) })
		if err == nil && torn {
			size, serr := f.Size()
			if serr == nil && i == len(segs)-1 && !intactAfter(f, end, size) {
				c.torn = size - end
			} else {
				err = c.fail(c.n, -1, "record in segment %s is corrupt (checksum) and is not a torn tail", segmentName(first))
			}
		}
		f.Close()
		if err != nil {
			var ve *VerifyError
			if errors.As(err, &ve) {
				return nil, err
			}
			return nil, fmt.Errorf("verify %s: %w", dir, err)
		}
	}
	return c.Finish()
}

// intactAfter reports whether the frame that the length at off announces is
// followed by an intact frame: then the bad frame at off is not a torn tail
// but a corrupt or altered record.
func intactAfter(f File, off, size int64) bool {
	var h [frameHeaderSize]byte
	if _, err := f.ReadAt(h[:], off); err != nil {
		return false
	}
	next := off + frameHeaderSize + int64(binary.BigEndian.Uint32(h[:4]))
	if next >= size {
		return false
	}
	fr := newFrameReader(io.NewSectionReader(f, next, size-next), next)
	_, _, err := fr.next()
	return err == nil
}

func readOrigin(fsys FS, dir string) (string, error) {
	f, err := fsys.OpenFile(filepath.Join(dir, originFile), os.O_RDONLY, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readCheckpoints returns the signed notes in the checkpoints file (a torn
// tail is ignored: it was never acknowledged).
func readCheckpoints(fsys FS, dir string) ([][]byte, error) {
	f, err := fsys.OpenFile(filepath.Join(dir, checkpointsFile), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := readHeader(f, checkpointMagic); err == errTorn {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	var out [][]byte
	fr := newFrameReader(io.NewSectionReader(f, headerSize, 1<<62), headerSize)
	for {
		p, _, err := fr.next()
		if err == io.EOF || err == errTorn {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, append([]byte(nil), p...))
	}
}

// Checkpoints returns the signed checkpoints stored in the log directory dir
// (for shipping them elsewhere).
func Checkpoints(fsys FS, dir string) ([][]byte, error) {
	if fsys == nil {
		fsys = OSFS{}
	}
	return readCheckpoints(fsys, dir)
}
