package mask

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/custos-dev/custos/filters/mask/engine"
)

// ErrFailed says the engine failed on a body (a trapped or runaway module,
// a body that is not what its content type says): the response fails
// closed, and every later call on the stream fails too.
var ErrFailed = errors.New("masking failed")

// sliceSize bounds the new bytes handed to the engine per call, so the
// engine's memory stays bounded whatever size of chunk the proxy sends.
const sliceSize = 256 << 10

// maxPointers bounds the JSON pointers a stream's report keeps.
const maxPointers = 1000

// maxPointerBytes is the size of a report whose pointers a stream copies
// out rather than keeping the report's bytes alive.
const maxPointerBytes = 256 << 10

// backend runs the engine: natively or in a WASM instance.
type backend interface {
	// call masks in (the stream's unconsumed bytes then new ones),
	// appending the output to dst and the next state to stDst (which may
	// share state's array: state is read first).
	call(u *union, f engine.Format, state, in []byte, final bool, dst, stDst []byte) (out []byte, consumed int, next []byte, rep engine.Report, err error)
}

// core is what both engines share: the profiles and their unions.
type core struct {
	ps profiles
	be backend

	mu     sync.Mutex
	unions map[string]*union
	// compile readies a new union (the native engine compiles it).
	compile func(*union) error
}

func (c *core) union(p Profile) (*union, error) {
	key := p.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if u, ok := c.unions[key]; ok {
		return u, nil
	}
	cfg, best, err := c.ps.union(p)
	if err != nil {
		return nil, err
	}
	js, err := configJSON(cfg)
	if err != nil {
		return nil, err
	}
	u := &union{id: len(c.unions) + 1, cfg: cfg, json: js, bestEffort: best, names: reportNames(cfg)}
	if c.compile != nil {
		if err := c.compile(u); err != nil {
			return nil, fmt.Errorf("masking profile %s: %w", p, err)
		}
	}
	if c.unions == nil {
		c.unions = map[string]*union{}
	}
	c.unions[key] = u
	return u, nil
}

// open starts a stream for p over body b.
func (c *core) open(p Profile, b Body) (Stream, error) {
	if p.Empty() {
		return passThrough{}, nil
	}
	u, err := c.union(p)
	if err != nil {
		return nil, err
	}
	f, okf := format(b.ContentType)
	enc, oke := contentEncoding(b.ContentEncoding)
	if !okf || !oke {
		if !u.bestEffort {
			what := "content type " + quoteHeader(b.ContentType)
			if !oke {
				what = "content encoding " + quoteHeader(b.ContentEncoding)
			}
			return nil, fmt.Errorf("masking profile %s: %s: %w", p, what, ErrUnreadable)
		}
		return &stream{pass: true, details: Details{Unread: true}}, nil
	}
	s := &stream{c: c, u: u, f: f}
	if enc != identity {
		s.codec = newCodec(enc)
		quit := s.codec.quit
		runtime.AddCleanup(s, func(q chan struct{}) { closeOnce(q) }, quit)
	}
	return s, nil
}

// quoteHeader quotes a header value for an error message, bounded.
func quoteHeader(v string) string {
	if len(v) > 64 {
		v = v[:64]
	}
	return fmt.Sprintf("%q", v)
}

// Details is a stream's full report: counts per entity and operator and the
// JSON pointers of the masked values. Never a value.
type Details struct {
	// Counts maps entity → operator → values masked.
	Counts map[string]map[string]int
	// Pointers are the JSON pointers of the masked values (NDJSON: the
	// line number first; CSV: /record/column), at most 1,000, each token
	// masked with profile all (a key can be a value) and each at most
	// 1,024 bytes.
	Pointers []string
	// PointersDropped counts the pointers left out.
	PointersDropped int
	// Unread is set when a best-effort profile let an unreadable body pass.
	Unread bool
}

// stream masks one body through a backend.
type stream struct {
	c       *core
	u       *union
	f       engine.Format
	pass    bool
	codec   *codec
	pending []byte
	state   []byte
	// counts are merged per entity and operator (index finds one once
	// there are many); details holds the rest of the report.
	counts  []engine.Count
	index   map[[2]string]int
	details Details
	err     error
	done    bool
}

func (s *stream) Mask(chunk []byte, end bool) ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.pass {
		return chunk, nil
	}
	if s.done {
		return nil, s.fail(errors.New("masking: chunk after the end of the body"))
	}
	var out []byte
	var err error
	if s.codec != nil {
		out, err = s.codec.mask(chunk, end, s.maskPlain)
	} else {
		out, err = s.maskPlain(nil, chunk, end)
	}
	if err != nil {
		return nil, s.fail(err)
	}
	if end {
		s.done = true
		s.Close()
	}
	return out, nil
}

func (s *stream) fail(err error) error {
	s.err = fmt.Errorf("%w: %w", ErrFailed, err)
	s.Close()
	return s.err
}

// maskPlain masks decoded bytes, in slices of at most sliceSize new bytes.
// The bytes the engine has not consumed wait in s.pending; when none wait,
// the slice goes to the engine as it is.
func (s *stream) maskPlain(dst, plain []byte, end bool) ([]byte, error) {
	for {
		k := len(plain)
		if k > sliceSize {
			k = sliceSize
		}
		in := plain[:k]
		if len(s.pending) > 0 {
			s.pending = append(s.pending, in...)
			in = s.pending
		}
		plain = plain[k:]
		final := end && len(plain) == 0
		out, consumed, next, rep, err := s.c.be.call(s.u, s.f, s.state, in, final, dst, s.state[:0])
		if err != nil {
			return nil, err
		}
		if consumed < 0 || consumed > len(in) || (final && consumed != len(in)) {
			return nil, errors.New("masking: the module consumed more or less than it was given")
		}
		dst = out
		s.state = next
		s.pending = append(s.pending[:0], in[consumed:]...)
		s.add(rep)
		if len(plain) == 0 {
			return dst, nil
		}
	}
}

// Other names, in a report, an entity or operator that is neither the
// profile's nor an entity name's shape (entityName): a replacement
// module's report never puts a string that could be a value in the
// events, the log or the metrics.
const Other = "other"

// entityName reports whether a module's own entity name has the shape of
// one: a lower-case letter, then up to 31 lower-case letters, digits or
// '_', with fewer than four digits (no account, card or phone number).
func entityName(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'z' || c == '_':
		default:
			return false
		}
	}
	return digits < 4
}

// reportNames are the entity names a report of cfg may count: its
// entities, its patterns' and its field rules' (default "field").
func reportNames(cfg engine.Config) map[string]bool {
	names := map[string]bool{}
	for _, e := range cfg.Entities {
		names[e] = true
	}
	for _, p := range cfg.Patterns {
		names[p.Name] = true
	}
	for _, f := range cfg.Fields {
		if f.Entity == "" {
			names["field"] = true
		} else {
			names[f.Entity] = true
		}
	}
	return names
}

var reportOperators = map[string]bool{engine.Redact: true, engine.Last4: true, engine.HMAC: true, engine.Null: true}

func (s *stream) add(r engine.Report) {
	for _, c := range r.Counts {
		if !s.u.names[c.Entity] && !entityName(c.Entity) {
			c.Entity = Other
		}
		if !reportOperators[c.Operator] {
			c.Operator = Other
		}
		s.count(c)
	}
	// Pointers are substrings of one copy of the report. A stream keeps
	// at most 1,000, each cut to 1,024 bytes between tokens, and copies
	// them out of a large report, so a module (or a document of long keys)
	// cannot make it hold more than about a megabyte, however long the body.
	long, total := false, 0
	for _, p := range r.Pointers {
		total += len(p)
		long = long || len(p) > maxPointerLen
	}
	if !long && total <= maxPointerBytes && s.details.Pointers == nil && len(r.Pointers) <= maxPointers {
		// the report's own slice: each call's report is new and held by
		// nothing else, so the stream may keep it and append to it
		s.details.Pointers = r.Pointers
	} else {
		for _, p := range r.Pointers {
			if len(s.details.Pointers) >= maxPointers {
				s.details.PointersDropped++
				continue
			}
			if len(p) > maxPointerLen {
				p = cutPointer(p)
			} else if total > maxPointerBytes {
				p = strings.Clone(p)
			}
			s.details.Pointers = append(s.details.Pointers, p)
		}
	}
	s.details.PointersDropped += r.Dropped
}

// count adds c to the stream's counts.
func (s *stream) count(c engine.Count) {
	if s.index != nil {
		k := [2]string{c.Entity, c.Operator}
		if i, ok := s.index[k]; ok {
			s.counts[i].N += c.N
		} else {
			s.index[k] = len(s.counts)
			s.counts = append(s.counts, c)
		}
		return
	}
	for i := range s.counts {
		if s.counts[i].Entity == c.Entity && s.counts[i].Operator == c.Operator {
			s.counts[i].N += c.N
			return
		}
	}
	s.counts = append(s.counts, c)
	if len(s.counts) > 16 {
		// a module reporting many names: look them up, not through
		s.index = make(map[[2]string]int, len(s.counts))
		for i, c := range s.counts {
			s.index[[2]string{c.Entity, c.Operator}] = i
		}
	}
}

func (s *stream) Report() Report {
	var r Report
	for _, c := range s.counts {
		if r == nil {
			r = Report{}
		}
		r[c.Entity] += c.N
	}
	return r
}

func (s *stream) Details() Details {
	d := s.moduleDetails()
	d.Pointers = scrubPointers(d.Pointers)
	return d
}

// moduleDetails is the report as the module gave it, pointers unmasked.
func (s *stream) moduleDetails() Details {
	d := s.details
	for _, c := range s.counts {
		if d.Counts == nil {
			d.Counts = map[string]map[string]int{}
		}
		if d.Counts[c.Entity] == nil {
			d.Counts[c.Entity] = map[string]int{}
		}
		d.Counts[c.Entity][c.Operator] += c.N
	}
	return d
}

func (s *stream) Close() {
	if s.codec != nil {
		s.codec.close()
	}
	s.pending = nil
}

// Header renders r as the x-custos-masked header value: entity=count,
// sorted by entity ("card=3,iban=1").
func (r Report) Header() string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%d", k, r[k])
	}
	return b.String()
}
