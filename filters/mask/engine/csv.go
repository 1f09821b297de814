package engine

import (
	"bytes"
	"strconv"
)

// CSV is read as RFC 4180: fields separated by ',', quoted fields with ""
// for a quote, records ending in LF or CRLF. The first record names the
// columns (the context account_fields, ignore_fields and the hints read);
// its fields are scanned too, so a body without a header row is not read
// unmasked.

const (
	maxColumns    = 1024
	maxHeaderName = 256
)

type csvState struct {
	record  int
	col     int
	headers [][]byte
	ctxs    []fieldCtx
}

func (m *Masker) maskCSV(p *Profile, in []byte, final bool) (int, error) {
	cs := &m.cs
	m.tail, m.before = nil, 0
	m.trig |= clCtrl
	n := len(in)
	i, emitted := 0, 0
	for i < n {
		var content []byte
		end := 0
		quoted := in[i] == '"'
		if quoted {
			j := i + 1
			esc := false
			for {
				k := bytes.IndexByte(in[j:], '"')
				if k < 0 {
					return m.incomplete(in, i, emitted, final)
				}
				j += k
				if j+1 < n && in[j+1] == '"' {
					j += 2
					esc = true
					continue
				}
				if j+1 == n && !final {
					return m.incomplete(in, i, emitted, final)
				}
				break
			}
			content = in[i+1 : j]
			if esc {
				m.dec = append(m.dec[:0], content...)
				m.dec = bytes.ReplaceAll(m.dec, []byte(`""`), []byte(`"`))
				content = m.dec
			}
			end = j + 1
		} else {
			j := i
			for j < n && in[j] != ',' && in[j] != '\n' && in[j] != '\r' {
				j++
			}
			if j == n && !final {
				return m.incomplete(in, i, emitted, final)
			}
			content, end = in[i:j], j
		}
		if end < n && in[end] == '\r' && end+1 == n && !final {
			return m.incomplete(in, i, emitted, final)
		}
		if end < n && in[end] != ',' && in[end] != '\n' && in[end] != '\r' {
			return 0, ErrSyntax
		}
		changed, err := m.csvField(p, content, quoted)
		if err != nil {
			return 0, err
		}
		if changed {
			m.out = append(m.out, in[emitted:i]...)
			m.out = append(m.out, m.val...)
			emitted = end
		}
		if end == n {
			i = n
			break
		}
		switch in[end] {
		case ',':
			cs.col++
			i = end + 1
		case '\r':
			i = end + 1
			if i < n && in[i] == '\n' {
				i++
			}
			m.csvRecordDone(p)
		default:
			i = end + 1
			m.csvRecordDone(p)
		}
	}
	m.out = append(m.out, in[emitted:n]...)
	return n, nil
}

func (m *Masker) csvRecordDone(p *Profile) {
	cs := &m.cs
	if cs.record == 0 {
		m.csvContexts(p)
	}
	cs.record++
	cs.col = 0
}

func (m *Masker) csvContexts(p *Profile) {
	cs := &m.cs
	cs.ctxs = cs.ctxs[:0]
	for _, h := range cs.headers {
		cs.ctxs = append(cs.ctxs, m.context(p, h))
	}
}

// csvField masks one field's content; the new field text is in m.val.
func (m *Masker) csvField(p *Profile, content []byte, quoted bool) (bool, error) {
	cs := &m.cs
	fc := &noCtx
	if cs.record == 0 {
		if cs.col < maxColumns {
			for len(cs.headers) <= cs.col {
				cs.headers = append(cs.headers, nil)
			}
			// A name longer than any field's is kept as none (the column
			// is then named by its number): a cut one could end inside a
			// value the whole name was not.
			h := content
			if len(h) > maxHeaderName {
				h = nil
			}
			cs.headers[cs.col] = append(cs.headers[cs.col][:0], h...)
		}
	} else if cs.col < len(cs.ctxs) {
		fc = &cs.ctxs[cs.col]
	}
	m.scratch2 = m.scratch2[:0]
	if fc.has {
		if len(content) == 0 {
			return false, nil
		}
		m.scratch2 = m.replace(m.scratch2, p, fc.whole, content)
	} else {
		if _, err := m.detect(p, content, fc, true); err != nil {
			return false, err
		}
		if len(m.matches) == 0 {
			return false, nil
		}
		if nulls(p, m.matches) {
			for _, x := range m.matches {
				m.counts[x.ent][p.ops[x.ent]]++
				m.used |= 1 << x.ent
			}
		} else {
			m.scratch2 = m.apply(m.scratch2, p, content, m.matches)
		}
	}
	v := m.val[:0]
	if quoted || bytes.ContainsAny(m.scratch2, ",\"\r\n") {
		v = append(v, '"')
		for _, c := range m.scratch2 {
			if c == '"' {
				v = append(v, '"')
			}
			v = append(v, c)
		}
		v = append(v, '"')
	} else {
		v = append(v, m.scratch2...)
	}
	m.val = v
	b := append(m.ptrBuf[:0], '/')
	b = strconv.AppendInt(b, int64(cs.record), 10)
	if cs.record > 0 && cs.col < len(cs.headers) && len(cs.headers[cs.col]) > 0 {
		b = appendPointerToken(b, cs.headers[cs.col])
	} else {
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(cs.col), 10)
	}
	m.ptrBuf = b
	m.pointer(b)
	return true, nil
}
