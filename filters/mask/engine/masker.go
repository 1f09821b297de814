// Package engine finds and masks sensitive values (payment cards, IBANs,
// routing numbers, SSNs, e-mail addresses, phone numbers, secrets, account
// numbers and configured fields) in JSON, NDJSON, CSV and text bodies, in
// one pass over the bytes and in bounded memory.
//
// The engine is stateless between calls: a body is masked chunk by chunk,
// each call taking the stream's state and the bytes not yet consumed, and
// returning the masked output, how much input it consumed and the next
// state. The caller keeps the unconsumed bytes (a value cut by the chunk
// boundary) and hands them back with the next chunk. The Go WASM guest
// (filters/mask/guest) wraps this package behind the ABI of
// docs/masking-abi.md; tests and benchmarks run it natively too. The
// built-in module is this package ported to Rust (filters/mask/rsguest),
// which filters/mask's tests hold to the Go guest byte for byte: a change
// here is made there too.
package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
)

// Format is how a body is read.
type Format uint8

// Formats.
const (
	Text   Format = iota // any text: every byte is scanned
	JSON                 // one or more JSON values, tokenized as a stream
	NDJSON               // JSON values one per line; pointers start with the line number
	CSV                  // RFC 4180; the first record names the columns
)

// MaxToken bounds the bytes a single JSON string, CSV field or private key
// block may hold; a longer one fails the body closed (ErrTooLarge).
const MaxToken = 1 << 20

// maxCarry bounds the text kept back at the end of a text chunk: the
// longest value a text detector matches across a chunk boundary.
const maxCarry = 512

// maxPointers bounds the JSON pointers one call reports.
const maxPointers = 1024

// Errors a body fails with. They never carry a value.
var (
	ErrSyntax    = errors.New("masking: body is not what its content type says (syntax)")
	ErrBinary    = errors.New("masking: body holds binary data")
	ErrTooLarge  = errors.New("masking: a single value is larger than the engine reads (1 MiB)")
	ErrTruncated = errors.New("masking: body ended inside a value")
	ErrState     = errors.New("masking: stream state is corrupt")
	ErrDepth     = errors.New("masking: JSON nested deeper than 512")
)

const maxDepth = 512

// Masker masks bodies. It holds scratch space reused across calls and is
// not safe for concurrent use; one per goroutine (the guest has one).
type Masker struct {
	trig     uint8
	before   byte
	tail     []byte
	matches  []match
	groups   []group
	digits   []byte
	ibanBuf  []byte
	window   []byte
	norm     []byte
	out      []byte
	dec      []byte
	val      []byte
	scratch  []byte
	scratch2 []byte
	state    []byte
	macs     map[*Profile]hash.Hash
	sum      []byte
	counts   [maxEntities][4]uint32
	used     uint64
	ptrData  []byte  // the call's JSON pointers, end to end
	ptrEnds  []int32 // where each pointer ends in ptrData
	ptrBuf   []byte
	dropped  int
	pf       prefilter

	// ctxCache maps a field name to its fieldCtx under ctxProf, direct
	// mapped: records repeat their keys, and computing a context
	// (normalising, three map lookups) costs more than the value's scan.
	ctxCache [64]ctxEntry
	ctxGen   uint32
	ctxProf  *Profile

	js jsonState
	cs csvState
	ts textState
}

// NewMasker returns a Masker.
func NewMasker() *Masker { return &Masker{macs: map[*Profile]hash.Hash{}} }

// Result is what one Mask call produced. Its slices are valid until the
// Masker's next call.
type Result struct {
	// Out is the masked output for the consumed input.
	Out []byte
	// Consumed is how many input bytes Out covers; the caller hands the
	// rest back, before the next chunk.
	Consumed int
	// State is the stream's state for the next call.
	State []byte
}

// Mask masks in, the bytes of a body in format f that follow what earlier
// calls consumed, under profile p. state is the previous call's State (nil
// for a body's first call); final marks the body's last bytes, after which
// everything is consumed.
func (m *Masker) Mask(p *Profile, f Format, state, in []byte, final bool) (Result, error) {
	if m.macs == nil {
		m.macs = map[*Profile]hash.Hash{}
	}
	m.out = m.out[:0]
	m.ptrData, m.ptrEnds = m.ptrData[:0], m.ptrEnds[:0]
	for e := 0; e < maxEntities; e++ {
		if m.used&(1<<e) != 0 {
			m.counts[e] = [4]uint32{}
		}
	}
	m.used = 0
	m.dropped = 0
	m.trig = p.triggers()
	if f != JSON && f != NDJSON && f != CSV {
		m.trig |= clCtrl
	}
	m.pf = newPrefilter(m.trig)
	if err := m.loadState(p, f, state); err != nil {
		return Result{}, err
	}
	var n int
	var err error
	switch f {
	case JSON, NDJSON:
		n, err = m.maskJSON(p, in, final, f == NDJSON)
	case CSV:
		n, err = m.maskCSV(p, in, final)
	default:
		n, err = m.maskText(p, in, final)
	}
	if err != nil {
		return Result{}, err
	}
	if final && n != len(in) {
		return Result{}, ErrTruncated
	}
	m.state = m.saveState(f, m.state[:0])
	return Result{Out: m.out, Consumed: n, State: m.state}, nil
}

// replace appends the masked form of v, a value of entity ent.
func (m *Masker) replace(dst []byte, p *Profile, ent uint8, v []byte) []byte {
	op := p.ops[ent]
	m.counts[ent][op]++
	m.used |= 1 << ent
	switch op {
	case opLast4:
		alnum := 0
		for _, c := range v {
			if isAlnum(c) {
				alnum++
			}
		}
		k := 0
		for _, c := range v {
			if isAlnum(c) {
				if k < alnum-4 || alnum <= 4 {
					c = '*'
				}
				k++
			}
			dst = append(dst, c)
		}
		return dst
	case opHMAC:
		h := m.macs[p]
		if h == nil {
			h = hmac.New(sha256.New, p.key)
			m.macs[p] = h
		}
		h.Reset()
		h.Write([]byte(p.names[ent]))
		h.Write([]byte{0})
		h.Write(normalizeValue(m.scratch[:0], ent, v))
		m.sum = h.Sum(m.sum[:0])
		dst = append(dst, '[')
		dst = append(dst, p.upper[ent]...)
		dst = append(dst, ':')
		dst = hex.AppendEncode(dst, m.sum[:8])
		return append(dst, ']')
	case opNull:
		return dst
	}
	return append(dst, p.redacted[ent]...)
}

// normalizeValue is the form of v the hmac operator keys on, so that one
// account written two ways masks to one token.
func normalizeValue(dst []byte, ent uint8, v []byte) []byte {
	switch ent {
	case entCard, entABA, entSSN, entPhone:
		for _, c := range v {
			if isDigit(c) {
				dst = append(dst, c)
			}
		}
		return dst
	case entIBAN, entAccount:
		for _, c := range v {
			if isAlnum(c) {
				dst = append(dst, upper(c))
			}
		}
		return dst
	case entEmail:
		for _, c := range v {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		return dst
	}
	return append(dst, v...)
}

// apply appends t with the matches replaced.
func (m *Masker) apply(dst []byte, p *Profile, t []byte, ms []match) []byte {
	prev := 0
	for _, x := range ms {
		dst = append(dst, t[prev:x.s]...)
		dst = m.replace(dst, p, x.ent, t[x.s:x.e])
		prev = x.e
	}
	return append(dst, t[prev:]...)
}

// nulls reports whether one of ms is masked with the null operator.
func nulls(p *Profile, ms []match) bool {
	for _, x := range ms {
		if p.ops[x.ent] == opNull {
			return true
		}
	}
	return false
}

// pointer records the JSON pointer of the value being masked.
func (m *Masker) pointer(b []byte) {
	if len(m.ptrEnds) >= maxPointers {
		m.dropped++
		return
	}
	m.ptrData = append(m.ptrData, b...)
	m.ptrEnds = append(m.ptrEnds, int32(len(m.ptrData)))
}

// eachPointer calls f with each pointer the call recorded.
func (m *Masker) eachPointer(f func(p []byte)) {
	s := 0
	for _, e := range m.ptrEnds {
		f(m.ptrData[s:e])
		s = int(e)
	}
}

// appendPointerToken appends "/" and s escaped as a JSON pointer token.
func appendPointerToken(dst, s []byte) []byte {
	dst = append(dst, '/')
	for _, c := range s {
		switch c {
		case '~':
			dst = append(dst, '~', '0')
		case '/':
			dst = append(dst, '~', '1')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
