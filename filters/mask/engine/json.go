package engine

import (
	"strconv"
	"unicode/utf8"
)

// JSON is read by a streaming tokenizer: a stack of containers with the
// current key or index, never a decoded document. A string or number is
// consumed only once it is whole in the input (up to MaxToken), so each
// value is detected with its field's context and its escapes decoded.

const (
	jTop        uint8 = iota // between top-level values
	jValue                   // after ':' or ','
	jValueOrEnd              // after '['
	jKeyOrEnd                // after '{'
	jKey                     // after ',' in an object
	jColon                   // after a key
	jCommaOrEnd              // after a value inside a container
)

type frame struct {
	arr bool
	idx int
	key []byte
	ctx fieldCtx // objects: the current key's; arrays: the array's field's
}

type jsonState struct {
	doc    int
	st     uint8
	depth  int
	frames []frame
}

func (js *jsonState) reset() {
	js.doc, js.st, js.depth = 0, jTop, 0
}

// scanString finds the closing quote of the string whose content starts at
// in[j], eight bytes at a time. hit is set when the string holds a byte
// that may start a value under pf (a byte of its trigger classes); esc is
// set when it holds escapes; ok is false when the quote is not in in.
func scanString(in []byte, j int, pf *prefilter) (end int, esc, hit, ok bool, err error) {
	n := len(in)
	var cand uint64
	for j < n {
		if j+8 <= n {
			x := load8(in, j)
			s := stringStops(x)
			if cand == 0 {
				// pf.candidates, inlined, for the bytes before the stop
				v := x &^ hi8
				cand = ((v+0x50*lo8)&^(v+0x46*lo8)&^x&hi8&pf.digit |
					(eqMask(x, '+')|eqMask(x, '('))&pf.lead |
					eqMask(x, '@')&pf.at |
					eqMask(x, '=')&pf.eq |
					pemDashes(x)&pf.dash |
					bearerSpaces(x)&pf.space) & ((s & -s) - 1)
			}
			if s == 0 {
				j += 8
				continue
			}
			j += firstByte(s)
		}
		c := in[j]
		switch {
		case c == '"':
			return j, esc, cand != 0, true, nil
		case c == '\\':
			esc = true
			j += 2
			continue
		case c < 0x20:
			return 0, false, false, false, ErrSyntax
		}
		if cls[c]&pf.trig != 0 {
			cand = 1
		}
		j++
	}
	return 0, esc, false, false, nil
}

var noCtx fieldCtx

// sameBytes is string(a) == string(b) as a loop: for the short keys it
// compares, cheaper under wasm than the runtime's memequal call.
func sameBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if a[k] != b[k] {
			return false
		}
	}
	return true
}

// noFilter marks no byte: keys are scanned for their end only.
var noFilter prefilter

// minValue is the length of the shortest value a built-in detector
// matches: an e-mail address "a@b.cd"; digits need eight.
const minValue = 6

// minDigits is the fewest digits a numeric detector matches (classify).
const minDigits = 8

func (m *Masker) valueCtx() *fieldCtx {
	js := &m.js
	if js.depth == 0 {
		return &noCtx
	}
	return &js.frames[js.depth-1].ctx
}

func (m *Masker) push(arr bool) error {
	js := &m.js
	if js.depth == maxDepth {
		return ErrDepth
	}
	ctx := *m.valueCtx()
	if !arr {
		ctx = fieldCtx{}
	}
	if js.depth == len(js.frames) {
		js.frames = append(js.frames, frame{})
	}
	f := &js.frames[js.depth]
	f.arr, f.idx, f.key, f.ctx = arr, 0, f.key[:0], ctx
	js.depth++
	if arr {
		js.st = jValueOrEnd
	} else {
		js.st = jKeyOrEnd
	}
	return nil
}

func (m *Masker) valueDone() {
	js := &m.js
	if js.depth == 0 {
		js.st = jTop
		js.doc++
	} else {
		js.st = jCommaOrEnd
	}
}

func (m *Masker) pop() {
	m.js.depth--
	m.valueDone()
}

func isNumChar(c byte) bool {
	return isDigit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// maskJSON masks JSON (or NDJSON) and returns how much of in it consumed.
func (m *Masker) maskJSON(p *Profile, in []byte, final, nd bool) (int, error) {
	js := &m.js
	m.tail, m.before = nil, 0
	n := len(in)
	i, emitted := 0, 0
	// noRules: no field rule or pattern can claim a value the detectors
	// would pass over; with it, the current field's context decides
	// whether a value may skip jsonValue (quiet, below).
	noRules := len(p.rules) == 0 && len(p.patterns) == 0
	for i < n {
		c := in[i]
		if c == ' ' || c == '\n' || c == '\r' || c == '\t' {
			i++
			continue
		}
		switch js.st {
		case jTop, jValue, jValueOrEnd:
			if c == ']' && js.st == jValueOrEnd {
				m.pop()
				i++
				continue
			}
			start := i
			switch {
			case c == '{' || c == '[':
				if err := m.push(c == '['); err != nil {
					return 0, err
				}
				i++
				continue
			case c == '"':
				e, esc, hit, ok, err := scanString(in, i+1, &m.pf)
				if err != nil {
					return 0, err
				}
				if !ok {
					return m.incomplete(in, i, emitted, final)
				}
				if quiet := noRules && !m.valueCtx().has; quiet && !esc && (!hit || e-i-1 < minValue) {
					// jsonValue's first test, without the call
					i = e + 1
					m.valueDone()
					continue
				}
				changed, err := m.jsonValue(p, in[i+1:e], true, esc, hit, nd)
				if err != nil {
					return 0, err
				}
				if changed {
					m.out = append(m.out, in[emitted:start]...)
					m.out = append(m.out, m.val...)
					emitted = e + 1
				}
				i = e + 1
			case c == '-' || isDigit(c):
				j := i + 1
				for j < n && isNumChar(in[j]) {
					j++
				}
				if j == n && !final {
					return m.incomplete(in, i, emitted, final)
				}
				if j-i < minDigits && noRules && !m.valueCtx().has {
					// too short to hold the eight digits every numeric
					// detector needs (jsonValue's test, without the call)
					i = j
					m.valueDone()
					continue
				}
				changed, err := m.jsonValue(p, in[i:j], false, false, true, nd)
				if err != nil {
					return 0, err
				}
				if changed {
					m.out = append(m.out, in[emitted:start]...)
					m.out = append(m.out, m.val...)
					emitted = j
				}
				i = j
			case c == 't' || c == 'f' || c == 'n':
				lit := "null"
				if c == 't' {
					lit = "true"
				} else if c == 'f' {
					lit = "false"
				}
				if n-i < len(lit) {
					if final || string(in[i:]) != lit[:n-i] {
						return 0, ErrSyntax
					}
					return m.incomplete(in, i, emitted, final)
				}
				if string(in[i:i+len(lit)]) != lit {
					return 0, ErrSyntax
				}
				i += len(lit)
			default:
				return 0, ErrSyntax
			}
			m.valueDone()
		case jKeyOrEnd, jKey:
			if c == '}' && js.st == jKeyOrEnd {
				m.pop()
				i++
				continue
			}
			if c != '"' {
				return 0, ErrSyntax
			}
			// Most keys are short: when the first word past the quote
			// holds the closing quote and nothing before it stops a
			// string, the key is found without a call (calls are what
			// Go's wasm output pays most for).
			e, esc, ok := -1, false, false
			if i+9 <= n {
				x := load8(in, i+1)
				if st := eqMask(x, '"') | eqMask(x, '\\') | ctrlMask(x); st != 0 {
					if k := firstByte(st); in[i+1+k] == '"' {
						e, ok = i+1+k, true
					}
				}
			}
			if e < 0 {
				var err error
				if e, esc, _, ok, err = scanString(in, i+1, &noFilter); err != nil {
					return 0, err
				}
			}
			if !ok {
				return m.incomplete(in, i, emitted, final)
			}
			f := &js.frames[js.depth-1]
			if esc {
				d, err := decodeString(f.key[:0], in[i+1:e])
				if err != nil {
					return 0, err
				}
				f.key = d
			} else if key := in[i+1 : e]; len(key) <= 16 {
				if cap(f.key) < 16 {
					f.key = make([]byte, 0, 32)
				}
				f.key = f.key[:len(key)]
				//lint:ignore S1001 copy calls runtime.memmove: a call per key in the guest
				for k := range key {
					f.key[k] = key[k]
				}
			} else {
				f.key = append(f.key[:0], key...)
			}
			if len(p.patterns) > 0 || len(f.key) >= minValue && m.keyHit(f.key) {
				// A key can be a value (a document keyed by card or
				// account number): masked as a string is, before its
				// context and the pointers are taken from it.
				changed, err := m.jsonKey(p, f, nd)
				if err != nil {
					return 0, err
				}
				if changed {
					m.out = append(m.out, in[emitted:i]...)
					m.out = append(m.out, m.val...)
					emitted = e + 1
				}
			}
			// The context cache's lookup, inlined (context's fast path).
			name := f.key
			if len(name) == 0 {
				f.ctx = fieldCtx{}
			} else if h := ctxSlot(name); m.ctxProf == p && m.ctxCache[h].gen == m.ctxGen && sameBytes(m.ctxCache[h].key, name) {
				f.ctx = m.ctxCache[h].ctx
			} else {
				f.ctx = m.context(p, name)
			}
			i = e + 1
			js.st = jColon
		case jColon:
			if c != ':' {
				return 0, ErrSyntax
			}
			i++
			js.st = jValue
		case jCommaOrEnd:
			f := &js.frames[js.depth-1]
			switch {
			case c == ',':
				if f.arr {
					f.idx++
					js.st = jValue
				} else {
					js.st = jKey
				}
				i++
			case (c == '}' && !f.arr) || (c == ']' && f.arr):
				m.pop()
				i++
			default:
				return 0, ErrSyntax
			}
		}
	}
	if final && js.st != jTop {
		return 0, ErrTruncated
	}
	m.out = append(m.out, in[emitted:n]...)
	return n, nil
}

// incomplete ends a call at in[i], where a token starts that is not whole
// in in: the caller hands it back with the next chunk.
func (m *Masker) incomplete(in []byte, i, emitted int, final bool) (int, error) {
	if final {
		return 0, ErrTruncated
	}
	if len(in)-i > MaxToken {
		return 0, ErrTooLarge
	}
	m.out = append(m.out, in[emitted:i]...)
	return i, nil
}

// jsonValue masks one string (raw content, still escaped when esc) or
// number. It reports whether the value changed, its new JSON text in m.val.
//
// hit says raw may hold a value (a byte of the profile's trigger classes).
func (m *Masker) jsonValue(p *Profile, raw []byte, str, esc, hit bool, nd bool) (bool, error) {
	fc := m.valueCtx()
	whole, has := fc.whole, fc.has
	if len(p.rules) > 0 {
		if ent, ok := m.ruleAt(p); ok {
			whole, has = ent, true
		}
	}
	if !has && len(p.patterns) == 0 && (!esc && !hit || len(raw) < minValue) {
		// nothing can start here, or too short to hold a value (escapes
		// only make the raw text longer than the decoded one)
		return false, nil
	}
	text := raw
	if esc {
		d, err := decodeString(m.dec[:0], raw)
		m.dec = d
		if err != nil {
			return false, err
		}
		text = d
	}
	v := m.val[:0]
	if has {
		if p.ops[whole] == opNull {
			m.counts[whole][opNull]++
			m.used |= 1 << whole
			v = append(v, "null"...)
		} else {
			v = append(v, '"')
			m.scratch2 = m.replace(m.scratch2[:0], p, whole, text)
			v = appendJSONString(v, m.scratch2)
			v = append(v, '"')
		}
		m.val = v
		m.jsonPointer(nd)
		return true, nil
	}
	if _, err := m.detect(p, text, fc, true); err != nil || len(m.matches) == 0 {
		return false, err
	}
	if nulls(p, m.matches) {
		for _, x := range m.matches {
			m.counts[x.ent][p.ops[x.ent]]++
			m.used |= 1 << x.ent
		}
		v = append(v, "null"...)
	} else if !esc && str {
		v = append(v, '"')
		v = m.apply(v, p, text, m.matches)
		v = append(v, '"')
	} else {
		m.scratch2 = m.apply(m.scratch2[:0], p, text, m.matches)
		v = append(v, '"')
		v = appendJSONString(v, m.scratch2)
		v = append(v, '"')
	}
	m.val = v
	m.jsonPointer(nd)
	return true, nil
}

// keyHit says a key may hold a value: it has a byte of the profile's
// trigger classes.
func (m *Masker) keyHit(k []byte) bool {
	for _, c := range k {
		if cls[c]&m.pf.trig != 0 {
			return true
		}
	}
	return false
}

// jsonKey masks the values in the key just read (f.key, decoded), with no
// field context; the null operator drops a value from a key (a key cannot
// be null). It reports whether the key changed, its new JSON text in
// m.val, f.key masked and the member's pointer recorded.
func (m *Masker) jsonKey(p *Profile, f *frame, nd bool) (bool, error) {
	var fc fieldCtx
	if _, err := m.detect(p, f.key, &fc, true); err != nil || len(m.matches) == 0 {
		return false, err
	}
	m.scratch2 = m.apply(m.scratch2[:0], p, f.key, m.matches)
	f.key = append(f.key[:0], m.scratch2...)
	v := append(m.val[:0], '"')
	v = appendJSONString(v, f.key)
	m.val = append(v, '"')
	m.jsonPointer(nd)
	return true, nil
}

// ruleAt returns the entity of the field rule matching the current value's
// path.
func (m *Masker) ruleAt(p *Profile) (uint8, bool) {
	js := &m.js
	for _, r := range p.rules {
		if len(r.segs) != js.depth {
			continue
		}
		ok := true
		for k, s := range r.segs {
			f := &js.frames[k]
			if s == "*" {
				continue
			}
			if f.arr {
				if s != strconv.Itoa(f.idx) {
					ok = false
					break
				}
			} else if s != string(f.key) {
				ok = false
				break
			}
		}
		if ok {
			return r.ent, true
		}
	}
	return 0, false
}

func (m *Masker) jsonPointer(nd bool) {
	if len(m.ptrEnds) >= maxPointers {
		m.dropped++
		return
	}
	js := &m.js
	b := m.ptrBuf[:0]
	if nd {
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(js.doc), 10)
	}
	for k := 0; k < js.depth; k++ {
		f := &js.frames[k]
		if f.arr {
			b = append(b, '/')
			b = strconv.AppendInt(b, int64(f.idx), 10)
		} else {
			b = appendPointerToken(b, f.key)
		}
	}
	m.ptrBuf = b
	m.pointer(b)
}

// decodeString appends the decoded content of a JSON string (without its
// quotes): escapes resolved, \u surrogate pairs joined.
func decodeString(dst, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		if i+1 >= len(raw) {
			return dst, ErrSyntax
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			dst = append(dst, raw[i+1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw[i+2:])
			if !ok {
				return dst, ErrSyntax
			}
			i += 6
			if r >= 0xd800 && r < 0xdc00 && i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
				if r2, ok := hex4(raw[i+2:]); ok && r2 >= 0xdc00 && r2 < 0xe000 {
					r = (r-0xd800)<<10 | (r2 - 0xdc00) + 0x10000
					i += 6
				}
			}
			if r >= 0xd800 && r < 0xe000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, rune(r))
			continue
		default:
			return dst, ErrSyntax
		}
		i += 2
	}
	return dst, nil
}

func hex4(b []byte) (uint32, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r uint32
	for _, c := range b[:4] {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | uint32(v)
	}
	return r, true
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s escaped for the inside of a JSON string.
func appendJSONString(dst, s []byte) []byte {
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20 || c == 0x7f:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
