package engine

import "bytes"

// maxPEM bounds the private key block held back waiting for its end; a
// longer one is masked from its start and the rest dropped up to its end.
const maxPEM = 64 << 10

// tailLen is how much already-emitted text a stream keeps for the context
// detectors read before a value ("routing number 021000021").
const tailLen = 40

type textState struct {
	pem  bool
	tail []byte
}

// maskText masks plain text: every byte is scanned. The end of a chunk
// that may be the start of a value (a run of token bytes, at most maxCarry)
// is left unconsumed.
func (m *Masker) maskText(p *Profile, in []byte, final bool) (int, error) {
	ts := &m.ts
	i := 0
	if ts.pem {
		if k := endOfPEM(in); k >= 0 {
			i = k
			ts.pem = false
		} else {
			const keep = 80
			if final || len(in) <= keep {
				if final {
					return len(in), nil
				}
				return 0, nil
			}
			return len(in) - keep, nil
		}
	}
	t := in[i:]
	m.tail = ts.tail
	m.before = 0
	if len(ts.tail) > 0 {
		m.before = ts.tail[len(ts.tail)-1]
	}
	pending, err := m.detect(p, t, &noCtx, final)
	if err != nil {
		return 0, err
	}
	cut := len(t)
	overflow := false
	if !final {
		cut = trailingCut(t)
		if pending < cut {
			cut = pending
			if len(t)-pending > maxPEM {
				overflow = true
			}
		}
	}
	ms := m.matches
	k := 0
	for k < len(ms) && ms[k].s < cut {
		if ms[k].e > cut {
			cut = ms[k].e
		}
		k++
	}
	m.out = m.apply(m.out, p, t[:cut], ms[:k])
	m.keepTail(t[:cut])
	if overflow {
		m.out = m.replace(m.out, p, entPrivateKey, nil)
		ts.pem = true
		ts.tail = ts.tail[:0]
		return len(in) - 80, nil
	}
	return i + cut, nil
}

func (m *Masker) keepTail(emitted []byte) {
	ts := &m.ts
	if len(emitted) >= tailLen {
		ts.tail = append(ts.tail[:0], emitted[len(emitted)-tailLen:]...)
		return
	}
	ts.tail = append(ts.tail, emitted...)
	if len(ts.tail) > tailLen {
		ts.tail = append(ts.tail[:0], ts.tail[len(ts.tail)-tailLen:]...)
	}
}

// trailingCut is where the run of bytes that may start a value at the end
// of t begins: token bytes, one or two spaces between them (numeric joins
// digit groups by two separators), at most maxCarry.
func trailingCut(t []byte) int {
	n := len(t)
	j := n
	for j > 0 && n-j < maxCarry {
		c := t[j-1]
		if isToken(c) {
			j--
			continue
		}
		if c == ' ' && j >= 2 && (isToken(t[j-2]) || t[j-2] == ' ' && j >= 3 && isToken(t[j-3])) {
			j--
			continue
		}
		break
	}
	return j
}

// endOfPEM returns the offset just past "-----END … -----" in in, or -1.
func endOfPEM(in []byte) int {
	k := bytes.Index(in, pemEnd)
	if k < 0 {
		return -1
	}
	d := bytes.Index(in[k+len(pemEnd):], pemDash)
	if d < 0 {
		return -1
	}
	return k + len(pemEnd) + d + len(pemDash)
}
