package engine

import (
	"encoding/binary"
	"errors"
)

// Count is how many values of one entity one operator masked.
type Count struct {
	Entity   string
	Operator string
	N        int
}

// Report is what a call masked: counts and where, never a value.
type Report struct {
	// Counts per entity and operator.
	Counts []Count
	// Pointers are the JSON pointers of the values masked (JSON: the
	// value's path; NDJSON: the line number first; CSV: /record/column).
	Pointers []string
	// Dropped counts the pointers left out past the limit.
	Dropped int
}

// Report returns what the last Mask call masked.
func (m *Masker) Report(p *Profile) Report {
	var r Report
	for e := 0; e < len(p.names); e++ {
		if m.used&(1<<e) == 0 {
			continue
		}
		for op, c := range m.counts[e] {
			if c > 0 {
				r.Counts = append(r.Counts, Count{Entity: p.names[e], Operator: opNames[op], N: int(c)})
			}
		}
	}
	m.eachPointer(func(p []byte) { r.Pointers = append(r.Pointers, string(p)) })
	r.Dropped = m.dropped
	return r
}

// AppendReport appends the last call's report in the ABI's wire form
// (docs/masking-abi.md).
func (m *Masker) AppendReport(dst []byte, p *Profile) []byte {
	for e := 0; e < len(p.names); e++ {
		if m.used&(1<<e) == 0 {
			continue
		}
		for op, c := range m.counts[e] {
			if c > 0 {
				dst = append(dst, 'c')
				dst = appendBytes(dst, []byte(p.names[e]))
				dst = appendBytes(dst, []byte(opNames[op]))
				dst = binary.AppendUvarint(dst, uint64(c))
			}
		}
	}
	s := 0
	for _, e := range m.ptrEnds {
		dst = append(dst, 'p')
		dst = appendBytes(dst, m.ptrData[s:e])
		s = int(e)
	}
	if m.dropped > 0 {
		dst = append(dst, 'd')
		dst = binary.AppendUvarint(dst, uint64(m.dropped))
	}
	return dst
}

// ErrReport says a report's wire form is malformed.
var ErrReport = errors.New("masking: malformed report")

// ParseReport reads a report in the ABI's wire form. The names and
// pointers it returns share one copy of b: a report costs three
// allocations whatever it holds.
func ParseReport(b []byte) (Report, error) {
	var rep Report
	if len(b) == 0 {
		return rep, nil
	}
	// The first pass checks the form and counts, so that the slices are
	// allocated once.
	nc, np := 0, 0
	r := reader{b: b}
	for len(r.b) > 0 && !r.bad {
		tag := r.b[0]
		r.b = r.b[1:]
		switch tag {
		case 'c':
			r.bytes()
			r.bytes()
			r.uvarint()
			nc++
		case 'p':
			r.bytes()
			np++
		case 'd':
			r.uvarint()
		default:
			return Report{}, ErrReport
		}
	}
	if r.bad {
		return Report{}, ErrReport
	}
	all := string(b)
	str := func(v []byte) string {
		off := len(b) - len(r.b) - len(v)
		return all[off : off+len(v)]
	}
	if nc > 0 {
		rep.Counts = make([]Count, 0, nc)
	}
	if np > 0 {
		rep.Pointers = make([]string, 0, np)
	}
	r = reader{b: b}
	for len(r.b) > 0 {
		tag := r.b[0]
		r.b = r.b[1:]
		switch tag {
		case 'c':
			e := str(r.bytes())
			op := str(r.bytes())
			n := r.uvarint()
			rep.Counts = append(rep.Counts, Count{Entity: e, Operator: op, N: int(n)})
		case 'p':
			rep.Pointers = append(rep.Pointers, str(r.bytes()))
		case 'd':
			rep.Dropped += int(r.uvarint())
		}
	}
	return rep, nil
}
