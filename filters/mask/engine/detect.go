package engine

import (
	"bytes"
	"sort"
)

// byte classes: what a byte can start. The scan loop skips every byte whose
// class is not in the profile's trigger set, so text without digits, '@',
// '=' and the like costs one table load per byte.
const (
	clDigit = 1 << iota // 0-9: cards, IBAN check digits, ABA, SSN, phone
	clLead              // '+' and '(': phone numbers
	clAt                // '@': e-mail
	clEq                // '=': AccountKey= and sig=
	clDash              // '-': -----BEGIN … PRIVATE KEY-----
	clSpace             // ' ': "Bearer "
	clCtrl              // control bytes: not text
	clStr               // '"' and '\\': ends or escapes a JSON string
)

var cls [256]uint8

// char kinds, for the validators' boundaries.
const (
	kDigit = 1 << iota
	kUpper
	kLower
	kWordOther // '_'
	kLocal     // e-mail local part: . % + -
	kToken     // other bytes a token (URL, key, number) can hold
)

var kind [256]uint8

func init() {
	for c := '0'; c <= '9'; c++ {
		cls[c] |= clDigit
		kind[c] |= kDigit
	}
	for c := 'A'; c <= 'Z'; c++ {
		kind[c] |= kUpper
	}
	for c := 'a'; c <= 'z'; c++ {
		kind[c] |= kLower
	}
	kind['_'] |= kWordOther
	for _, c := range []byte(".%+-") {
		kind[c] |= kLocal
	}
	for _, c := range []byte("-._@+=/%():~&?#,") {
		kind[c] |= kToken
	}
	cls['+'] |= clLead
	cls['('] |= clLead
	cls['@'] |= clAt
	cls['='] |= clEq
	cls['-'] |= clDash
	cls[' '] |= clSpace
	for c := 0; c < 0x20; c++ {
		if c != '\t' && c != '\n' && c != '\r' && c != '\f' {
			cls[c] |= clCtrl
		}
	}
	cls[0x7f] |= clCtrl
	cls['"'] |= clStr
	cls['\\'] |= clStr
}

func isDigit(c byte) bool { return kind[c]&kDigit != 0 }
func isAlpha(c byte) bool { return kind[c]&(kUpper|kLower) != 0 }
func isAlnum(c byte) bool { return kind[c]&(kDigit|kUpper|kLower) != 0 }
func isWord(c byte) bool  { return kind[c]&(kDigit|kUpper|kLower|kWordOther) != 0 }
func isLocal(c byte) bool { return kind[c]&(kDigit|kUpper|kLower|kWordOther|kLocal) != 0 }
func isToken(c byte) bool { return kind[c]&(kDigit|kUpper|kLower|kWordOther|kToken) != 0 }

// triggers is the set of byte classes p's detectors start on.
func (p *Profile) triggers() uint8 {
	var t uint8
	if p.on&(1<<entCard|1<<entIBAN|1<<entABA|1<<entSSN|1<<entPhone) != 0 {
		t |= clDigit
	}
	if p.on&(1<<entPhone) != 0 {
		t |= clLead
	}
	if p.on&(1<<entEmail) != 0 {
		t |= clAt
	}
	if p.on&(1<<entAzureKey|1<<entSAS) != 0 {
		t |= clEq
	}
	if p.on&(1<<entPrivateKey) != 0 {
		t |= clDash
	}
	if p.on&(1<<entBearer) != 0 {
		t |= clSpace
	}
	return t
}

// MayHold reports whether text t may hold a value p finds, read as Text:
// false only when t has no byte a detector starts on (nor a control byte,
// which fails a text body) or is digits only, fewer than a numeric
// detector needs. A profile with patterns or field rules may hold anything.
func (p *Profile) MayHold(t string) bool {
	if len(p.patterns) > 0 || len(p.rules) > 0 {
		return true
	}
	trig := p.triggers() | clCtrl
	hit, digits := false, true
	for k := 0; k < len(t); k++ {
		c := t[k]
		if cls[c]&trig != 0 {
			hit = true
		}
		if !isDigit(c) {
			digits = false
		}
	}
	return hit && !(digits && len(t) < minDigits)
}

// field hints: what a field's name says its bare values are.
const (
	hintSSN = 1 << iota
	hintPhone
	hintABA
)

// fieldCtx is what a field's (or CSV column's) name says about its values.
type fieldCtx struct {
	off   uint64 // entities not detected here (ignore_fields)
	hint  uint8
	whole uint8 // entity that masks the whole value, when hasWhole
	has   bool
}

// context computes the fieldCtx of a field named name.
func (m *Masker) context(p *Profile, name []byte) fieldCtx {
	if len(name) == 0 {
		return fieldCtx{}
	}
	if p != m.ctxProf {
		m.ctxProf = p
		m.ctxGen++
	}
	e := &m.ctxCache[ctxSlot(name)]
	if e.gen == m.ctxGen && string(e.key) == string(name) {
		return e.ctx
	}
	fc := m.newContext(p, name)
	if len(name) <= 64 {
		e.gen, e.key, e.ctx = m.ctxGen, append(e.key[:0], name...), fc
	}
	return fc
}

// ctxSlot is the slot of Masker.ctxCache for a non-empty field name
// (small enough to inline: maskJSON looks keys up without a call).
func ctxSlot(name []byte) uint {
	return (uint(len(name))*31 + uint(name[0])*7 + uint(name[len(name)-1])*3 + uint(name[len(name)/2])) & 63
}

// ctxEntry is one slot of Masker.ctxCache.
type ctxEntry struct {
	gen uint32
	key []byte
	ctx fieldCtx
}

// newContext computes the fieldCtx of a field named name.
func (m *Masker) newContext(p *Profile, name []byte) fieldCtx {
	m.norm = appendNormalized(m.norm[:0], name)
	n := m.norm
	var fc fieldCtx
	if len(n) == 0 {
		return fc
	}
	fc.off = p.ignore[string(n)]
	if p.on&(1<<entAccount) != 0 && p.accounts[string(n)] && fc.off&(1<<entAccount) == 0 {
		fc.whole, fc.has = entAccount, true
	} else if e, ok := secretFields[string(n)]; ok && p.on&(1<<e) != 0 && fc.off&(1<<e) == 0 {
		fc.whole, fc.has = e, true
	}
	if p.fieldHints {
		if bytes.Contains(n, []byte("ssn")) || bytes.Contains(n, []byte("socialsecurity")) {
			fc.hint |= hintSSN
		}
		if bytes.Contains(n, []byte("phone")) || bytes.Contains(n, []byte("mobile")) || bytes.Contains(n, []byte("fax")) {
			fc.hint |= hintPhone
		}
		if bytes.Contains(n, []byte("routing")) || bytes.HasPrefix(n, []byte("aba")) || bytes.Equal(n, []byte("rtn")) {
			fc.hint |= hintABA
		}
	}
	return fc
}

// match is one detected value: t[s:e] is entity ent.
type match struct {
	s, e int
	ent  uint8
}

type group struct{ s, e int }

const maxGroups = 24

// maxSpan is more groups than a value spans (a card: six of three digits
// and one; an SSN or a phone: at most four), but for a phone led by '+',
// which starts a run and so is read within its first window.
const maxSpan = 8

// detect finds the sensitive values in t, appending them to m.matches in
// order. before is the byte before t[0] (0 at a boundary). It returns the
// offset of a value that may continue past t (a private key whose end is
// not in t) or len(t) when there is none; with final set, such a value runs
// to the end of t.
func (m *Masker) detect(p *Profile, t []byte, fc *fieldCtx, final bool) (pending int, err error) {
	m.matches = m.matches[:0]
	trig := m.trig
	on := p.on &^ fc.off
	n := len(t)
	pending = n
	pf := &m.pf
	for i := 0; i < n; {
		c := cls[t[i]]
		if c&trig == 0 {
			i = pf.skip(t, i+1)
			if i < n && cls[t[i]]&trig == 0 {
				i++
			}
			continue
		}
		switch {
		case c&clCtrl != 0:
			return 0, ErrBinary
		case c&(clDigit|clLead) != 0:
			if c&clDigit != 0 && on&(1<<entIBAN) != 0 && i >= 2 && isAlpha(t[i-1]) && isAlpha(t[i-2]) && m.boundaryBefore(t, i-2) {
				if e := m.iban(t, i-2); e > 0 {
					m.add(i-2, e, entIBAN)
					i = e
					continue
				}
			}
			i = m.numeric(p, t, i, fc, on)
		case c&clAt != 0:
			if on&(1<<entEmail) != 0 {
				if s, e := email(t, i); e > 0 && (len(m.matches) == 0 || m.matches[len(m.matches)-1].e <= s) {
					m.add(s, e, entEmail)
					i = e
					continue
				}
			}
			i++
		case c&clEq != 0:
			if e, ent := secretAfterEq(t, i, on); e > 0 {
				m.add(i+1, e, ent)
				i = e
				continue
			}
			i++
		case c&clDash != 0:
			if on&(1<<entPrivateKey) != 0 && bytes.HasPrefix(t[i:], pemBegin) {
				e, complete := pemBlock(t, i)
				if !complete {
					if !final {
						return i, nil
					}
					e = n
				}
				if e > 0 {
					m.add(i, e, entPrivateKey)
					i = e
					continue
				}
			} else if on&(1<<entPrivateKey) != 0 && !final && n-i < len(pemBegin) && bytes.HasPrefix(pemBegin, t[i:]) {
				return i, nil
			}
			i++
		case c&clSpace != 0:
			if on&(1<<entBearer) != 0 && i >= 6 && t[i-1]|0x20 == 'r' && bytes.EqualFold(t[i-6:i], []byte("bearer")) && (i == 6 || !isAlpha(t[i-7])) {
				j := i + 1
				for j < n && (isWord(t[j]) || t[j] == '-' || t[j] == '.' || t[j] == '~' || t[j] == '+' || t[j] == '/') {
					j++
				}
				for j < n && t[j] == '=' {
					j++
				}
				if j-(i+1) >= 8 {
					m.add(i+1, j, entBearer)
					i = j
					continue
				}
			}
			i++
		default:
			i++
		}
	}
	if len(p.patterns) > 0 {
		m.customPatterns(p, t, fc.off)
	}
	return pending, nil
}

func (m *Masker) add(s, e int, ent uint8) {
	m.matches = append(m.matches, match{s: s, e: e, ent: ent})
}

// boundaryBefore reports whether t[i] starts a token: the byte before it is
// not a letter, digit or '_', nor a decimal point after a digit.
func (m *Masker) boundaryBefore(t []byte, i int) bool {
	var b, bb byte
	switch {
	case i >= 2:
		b, bb = t[i-1], t[i-2]
	case i == 1:
		b, bb = t[0], m.before
	default:
		b = m.before
	}
	if isWord(b) {
		return false
	}
	return !(b == '.' && isDigit(bb))
}

// boundaryAfter reports whether a token ending at t[e] ends there.
func boundaryAfter(t []byte, e int) bool {
	if e >= len(t) {
		return true
	}
	if isWord(t[e]) {
		return false
	}
	return !(t[e] == '.' && e+1 < len(t) && isDigit(t[e+1]))
}

func isSep(c byte) bool {
	return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')'
}

// numeric reads the number-like run at t[i] (a digit, '+' or '('): digit
// groups joined by one or two separators. It adds the cards, SSNs, phone
// numbers and routing numbers it holds and returns where scanning resumes.
func (m *Masker) numeric(p *Profile, t []byte, i int, fc *fieldCtx, on uint64) int {
	n := len(t)
	start := i
	var lead byte
	if t[i] == '+' || t[i] == '(' {
		lead = t[i]
		i++
		if i >= n || !isDigit(t[i]) {
			return i
		}
	}
	if lead != 0 && !m.boundaryBefore(t, start) {
		// "0+4111…": the '+' or '(' leads nothing; the digits may
		start, lead = i, 0
	}
	if !m.boundaryBefore(t, start) {
		for i < n && isWord(t[i]) {
			i++
		}
		return i
	}
	gs := m.groups[:0]
	a, led := 0, lead != 0
	j := i
	for {
		s := j
		for j < n && isDigit(t[j]) {
			j++
		}
		gs = append(gs, group{s, j})
		k := j
		if k < n && isSep(t[k]) {
			k++
			if k < n && isSep(t[k]) {
				k++
			}
		}
		if k == j || k >= n || !isDigit(t[k]) {
			break
		}
		if len(gs) == maxGroups {
			// A long run ("1 2 3 … 4111 1111 1111 1111"): decide the
			// values that start where none can reach past the groups
			// read, and slide on, so memory stays bounded and a value
			// astride the window is still read whole.
			a = m.values(t, gs, a, maxGroups-maxSpan, led, start, fc, on)
			gs = gs[:copy(gs, gs[a:])]
			a, led = 0, false
		}
		j = k
	}
	m.groups = gs
	next := gs[len(gs)-1].e
	if !boundaryAfter(t, next) {
		// the last group is glued to a word: it is not a whole token
		gs = gs[:len(gs)-1]
		for next < n && isWord(t[next]) {
			next++
		}
	}
	m.values(t, gs, a, len(gs), led, start, fc, on)
	return next
}

// values adds the values starting at groups a..limit-1 of gs, at each the
// longest, and returns the first group not yet decided. led is set when
// gs[0] starts the run and the run opened with '+' or '(' at t[start].
func (m *Masker) values(t []byte, gs []group, a, limit int, led bool, start int, fc *fieldCtx, on uint64) int {
	for a < limit {
		found := false
		hi := len(gs)
		if hi-a > maxSpan && !(a == 0 && led) {
			hi = a + maxSpan // no longer span is a value
		}
		for b := hi; b > a; b-- {
			s, e, ent, ok := m.classify(t, gs[a:b], a == 0 && led, start, fc, on)
			if ok {
				m.add(s, e, ent)
				a, found = b, true
				break
			}
		}
		if !found {
			a++
		}
	}
	return a
}

// classify says which entity the digit groups gs are, if any. led is set
// when gs starts the run and the run opened with '+' or '(' at t[start].
func (m *Masker) classify(t []byte, gs []group, led bool, start int, fc *fieldCtx, on uint64) (s, e int, ent uint8, ok bool) {
	nd := 0
	for _, g := range gs {
		nd += g.e - g.s
	}
	if nd > 19 || nd < minDigits {
		return 0, 0, 0, false
	}
	d := m.digits[:0]
	for _, g := range gs {
		d = append(d, t[g.s:g.e]...)
	}
	m.digits = d
	s, e = gs[0].s, gs[len(gs)-1].e
	// one separator throughout, one byte long
	uniform := byte(0)
	if len(gs) > 1 {
		uniform = t[gs[0].e]
		for k := 0; k+1 < len(gs); k++ {
			if gs[k+1].s-gs[k].e != 1 || t[gs[k].e] != uniform {
				uniform = 1
				break
			}
		}
	}
	if on&(1<<entCard) != 0 && nd >= 13 && cardPrefix(d) && (len(gs) == 1 || uniform == ' ' || uniform == '-') {
		shape := true
		for k := 0; len(gs) > 1 && k < len(gs); k++ {
			l := gs[k].e - gs[k].s
			if l > 6 || (l < 3 && k != len(gs)-1) {
				shape = false
				break
			}
		}
		if shape && luhn(d) {
			return s, e, entCard, true
		}
	}
	if on&(1<<entPhone) != 0 {
		if led && t[start] == '+' && nd >= 8 && nd <= 15 && d[0] != '0' {
			return start, e, entPhone, true
		}
		if nd == 10 || (nd == 11 && d[0] == '1') {
			dd := d[nd-10:]
			if nanpValid(dd) && phoneShape(t, gs, nd) {
				if led {
					s = start
				}
				return s, e, entPhone, true
			}
			if len(gs) == 1 && fc.hint&hintPhone != 0 && nanpValid(dd) {
				return s, e, entPhone, true
			}
		}
	}
	if nd == 9 && on&(1<<entSSN) != 0 && len(gs) == 3 && (uniform == '-' || uniform == ' ') &&
		gs[0].e-gs[0].s == 3 && gs[1].e-gs[1].s == 2 && ssnValid(d) {
		return s, e, entSSN, true
	}
	if nd == 9 && len(gs) == 1 && !led {
		if fc.hint&hintSSN != 0 && on&(1<<entSSN) != 0 && ssnValid(d) {
			return s, e, entSSN, true
		}
		if on&(1<<entABA) != 0 && abaValid(d) && (fc.hint&hintABA != 0 || m.keywordBefore(t, s, abaWords)) {
			return s, e, entABA, true
		}
		if on&(1<<entSSN) != 0 && ssnValid(d) && m.keywordBefore(t, s, ssnWords) {
			return s, e, entSSN, true
		}
	}
	return 0, 0, 0, false
}

// phoneShape reports whether the groups are written as a North American
// number is: 3-3-4 or 1-3-3-4, separated.
func phoneShape(t []byte, gs []group, nd int) bool {
	l := func(k int) int { return gs[k].e - gs[k].s }
	switch {
	case len(gs) == 3 && nd == 10:
		return l(0) == 3 && l(1) == 3
	case len(gs) == 4 && nd == 11:
		return l(0) == 1 && l(1) == 3 && l(2) == 3
	}
	return false
}

var (
	abaWords = [][]byte{[]byte("routing"), []byte("aba"), []byte("rtn"), []byte("transit")}
	ssnWords = [][]byte{[]byte("ssn"), []byte("social security"), []byte("social sec")}
)

// keywordBefore reports whether one of words (lower case) appears, in any
// case, in the 40 bytes before t[s] (reaching into the stream's tail).
func (m *Masker) keywordBefore(t []byte, s int, words [][]byte) bool {
	const window = 40
	w := m.window[:0]
	if s < window && len(m.tail) > 0 {
		k := len(m.tail) - (window - s)
		if k < 0 {
			k = 0
		}
		w = append(w, m.tail[k:]...)
	}
	lo := s - window
	if lo < 0 {
		lo = 0
	}
	w = append(w, t[lo:s]...)
	for k := range w {
		if w[k] >= 'A' && w[k] <= 'Z' {
			w[k] += 'a' - 'A'
		}
	}
	m.window = w
	for _, kw := range words {
		if bytes.Contains(w, kw) {
			return true
		}
	}
	return false
}

// iban returns the end of a valid IBAN starting at t[s] (two letters), or 0.
// Print form (groups of four separated by one space) and electronic form
// are read; letters of either case.
func (m *Masker) iban(t []byte, s int) int {
	cc := [2]byte{t[s] &^ 0x20, t[s+1] &^ 0x20}
	want := ibanLength[cc]
	if want == 0 {
		return 0
	}
	b := m.ibanBuf[:0]
	j := s
	n := len(t)
	for j < n && len(b) < want {
		c := t[j]
		switch {
		case isAlnum(c):
			b = append(b, upper(c))
			j++
		case c == ' ' && len(b)%4 == 0 && j+1 < n && isAlnum(t[j+1]):
			j++
		default:
			m.ibanBuf = b
			return 0
		}
	}
	m.ibanBuf = b
	if len(b) != want || !boundaryAfter(t, j) || !ibanValid(b) {
		return 0
	}
	return j
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// email returns the span of the address around the '@' at t[at], or e == 0.
func email(t []byte, at int) (s, e int) {
	s = at
	for s > 0 && at-s < 64 && isLocal(t[s-1]) {
		s--
	}
	if s == at || t[s] == '.' || (s > 0 && isLocal(t[s-1])) {
		return 0, 0
	}
	j := at + 1
	n := len(t)
	labels := 0
	lastStart := j
	for {
		ls := j
		for j < n && (isAlnum(t[j]) || t[j] == '-') {
			j++
		}
		if j == ls {
			return 0, 0
		}
		labels++
		lastStart = ls
		if j+1 < n && t[j] == '.' && isAlnum(t[j+1]) {
			j++
			continue
		}
		break
	}
	if labels < 2 || j-lastStart < 2 || j-at > 253 {
		return 0, 0
	}
	for k := lastStart; k < j; k++ {
		if !isAlpha(t[k]) {
			return 0, 0
		}
	}
	if j < n && (isWord(t[j]) || t[j] == '@') {
		return 0, 0
	}
	return s, j
}

// secretAfterEq reads a secret value after the '=' at t[i]: an Azure
// Storage AccountKey= (or SharedAccessKey=) and a SAS sig=.
func secretAfterEq(t []byte, i int, on uint64) (e int, ent uint8) {
	ks := i
	for ks > 0 && i-ks < 16 && isAlpha(t[ks-1]) {
		ks--
	}
	key := t[ks:i]
	if ks > 0 && isWord(t[ks-1]) {
		return 0, 0
	}
	n := len(t)
	j := i + 1
	switch {
	case on&(1<<entAzureKey) != 0 && (bytes.EqualFold(key, []byte("accountkey")) || bytes.EqualFold(key, []byte("sharedaccesskey"))):
		for j < n && (isAlnum(t[j]) || t[j] == '+' || t[j] == '/') {
			j++
		}
		for j < n && t[j] == '=' {
			j++
		}
		if j-(i+1) >= 20 {
			return j, entAzureKey
		}
	case on&(1<<entSAS) != 0 && bytes.EqualFold(key, []byte("sig")):
		for j < n && (isAlnum(t[j]) || t[j] == '%' || t[j] == '+' || t[j] == '/' || t[j] == '=' || t[j] == '_' || t[j] == '-') {
			j++
		}
		if j-(i+1) >= 8 {
			return j, entSAS
		}
	}
	return 0, 0
}

var (
	pemBegin = []byte("-----BEGIN ")
	pemEnd   = []byte("-----END ")
	pemDash  = []byte("-----")
)

// pemBlock returns the end of the private key block starting at t[i]
// (which starts with pemBegin): complete is false when its end is not in t.
// e is 0 when the block is not a private key.
func pemBlock(t []byte, i int) (e int, complete bool) {
	rest := t[i+len(pemBegin):]
	k := bytes.Index(rest, pemDash)
	if k < 0 {
		if len(rest) < 80 {
			return 0, false
		}
		return 0, true
	}
	if k > 64 || !bytes.HasSuffix(rest[:k], []byte("PRIVATE KEY")) {
		return 0, true
	}
	body := rest[k+len(pemDash):]
	off := i + len(pemBegin) + k + len(pemDash)
	ke := bytes.Index(body, pemEnd)
	if ke < 0 {
		return 0, false
	}
	tail := body[ke+len(pemEnd):]
	kd := bytes.Index(tail, pemDash)
	if kd < 0 {
		return 0, false
	}
	return off + ke + len(pemEnd) + kd + len(pemDash), true
}

// customPatterns adds the matches of p's regular expressions and puts the
// matches back in order, the first and longest winning an overlap.
func (m *Masker) customPatterns(p *Profile, t []byte, off uint64) {
	added := false
	for _, pr := range p.patterns {
		if off&(1<<pr.ent) != 0 {
			continue
		}
		for _, loc := range pr.re.FindAllIndex(t, -1) {
			if loc[1] > loc[0] {
				m.add(loc[0], loc[1], pr.ent)
				added = true
			}
		}
	}
	if !added {
		return
	}
	ms := m.matches
	sort.SliceStable(ms, func(a, b int) bool {
		if ms[a].s != ms[b].s {
			return ms[a].s < ms[b].s
		}
		return ms[a].e > ms[b].e
	})
	out := ms[:0]
	end := -1
	for _, x := range ms {
		if x.s < end {
			continue
		}
		out = append(out, x)
		end = x.e
	}
	m.matches = out
}
