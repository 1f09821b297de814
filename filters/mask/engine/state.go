package engine

import "encoding/binary"

// The state a stream carries between calls, as bytes the host keeps and
// hands back (opaque to it): version, format, then the format's own.
//
//	text: flags (1 = inside a private key block), tail
//	json: document number, tokenizer state, depth, per frame: array flag, index, key
//	csv:  record, column, header names
//
// Numbers are uvarints; byte strings a uvarint length then the bytes.

const stateVersion = 1

func (m *Masker) loadState(p *Profile, f Format, b []byte) error {
	m.js.reset()
	m.cs.record, m.cs.col, m.cs.headers, m.cs.ctxs = 0, 0, m.cs.headers[:0], m.cs.ctxs[:0]
	m.ts.pem, m.ts.tail = false, m.ts.tail[:0]
	if len(b) == 0 {
		return nil
	}
	if len(b) < 2 || b[0] != stateVersion || Format(b[1]) != f {
		return ErrState
	}
	r := reader{b: b[2:]}
	switch f {
	case Text:
		m.ts.pem = r.uvarint() == 1
		m.ts.tail = append(m.ts.tail, r.bytes()...)
	case JSON, NDJSON:
		js := &m.js
		js.doc = int(r.uvarint())
		js.st = uint8(r.uvarint())
		depth := int(r.uvarint())
		// only a top-level state has no container open, and it has none
		if depth > maxDepth || js.st > jCommaOrEnd || (depth == 0) != (js.st == jTop) {
			return ErrState
		}
		for k := 0; k < depth && !r.bad; k++ {
			if k == len(js.frames) {
				js.frames = append(js.frames, frame{})
			}
			fr := &js.frames[k]
			fr.arr = r.uvarint() == 1
			fr.idx = int(r.uvarint())
			fr.key = append(fr.key[:0], r.bytes()...)
			fr.ctx = fieldCtx{}
		}
		js.depth = depth
		if r.bad {
			return ErrState
		}
		// contexts are not carried: they follow from the keys
		for k := 0; k < depth; k++ {
			fr := &js.frames[k]
			if fr.arr {
				if k > 0 {
					fr.ctx = js.frames[k-1].ctx
				}
			} else if js.st != jKeyOrEnd || k != depth-1 {
				fr.ctx = m.context(p, fr.key)
			}
		}
	case CSV:
		cs := &m.cs
		cs.record = int(r.uvarint())
		cs.col = int(r.uvarint())
		nh := int(r.uvarint())
		if nh > maxColumns {
			return ErrState
		}
		for k := 0; k < nh && !r.bad; k++ {
			cs.headers = append(cs.headers, append([]byte(nil), r.bytes()...))
		}
		if cs.record > 0 {
			m.csvContexts(p)
		}
	}
	if r.bad {
		return ErrState
	}
	return nil
}

func (m *Masker) saveState(f Format, b []byte) []byte {
	b = append(b, stateVersion, byte(f))
	switch f {
	case Text:
		flags := uint64(0)
		if m.ts.pem {
			flags = 1
		}
		b = binary.AppendUvarint(b, flags)
		b = appendBytes(b, m.ts.tail)
	case JSON, NDJSON:
		js := &m.js
		b = binary.AppendUvarint(b, uint64(js.doc))
		b = binary.AppendUvarint(b, uint64(js.st))
		b = binary.AppendUvarint(b, uint64(js.depth))
		for k := 0; k < js.depth; k++ {
			fr := &js.frames[k]
			arr := uint64(0)
			if fr.arr {
				arr = 1
			}
			b = binary.AppendUvarint(b, arr)
			b = binary.AppendUvarint(b, uint64(fr.idx))
			b = appendBytes(b, fr.key)
		}
	case CSV:
		cs := &m.cs
		b = binary.AppendUvarint(b, uint64(cs.record))
		b = binary.AppendUvarint(b, uint64(cs.col))
		b = binary.AppendUvarint(b, uint64(len(cs.headers)))
		for _, h := range cs.headers {
			b = appendBytes(b, h)
		}
	}
	return b
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type reader struct {
	b   []byte
	bad bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > 1<<40 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	l := r.uvarint()
	if r.bad || l > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	s := r.b[:l]
	r.b = r.b[l:]
	return s
}
