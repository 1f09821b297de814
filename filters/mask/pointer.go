package mask

import (
	"strings"
	"sync"

	"github.com/custos-dev/custos/filters/mask/engine"
)

// A pointer is made of a document's keys, and a key can be a value: a
// document keyed by card number or IBAN ({"4111…": {...}}) names it in the
// pointer of every value masked below it. The built-in module masks such
// keys itself, but a report's pointers are masked again here, token by
// token, with profile all (as text: no field name says a token is an
// account number), whatever module produced them: the record stage gets
// /[REDACTED:CARD]/cvv, never the number.

// maxPointerLen bounds one pointer as recorded. A longer one keeps the
// whole tokens that fit and ends in /[TRUNCATED]: it is never cut inside a
// token, whose cut prefix could be a value its whole was not.
const maxPointerLen = 1024

const truncatedToken = "/[TRUNCATED]"

// pointerScrubber masks pointer tokens with profile all.
type pointerScrubber struct {
	once sync.Once
	p    *engine.Profile
	err  error
	pool sync.Pool
}

var scrubber pointerScrubber

func (s *pointerScrubber) profile() (*engine.Profile, error) {
	s.once.Do(func() {
		cfg, _ := engine.Builtin("all")
		s.p, s.err = engine.Compile(cfg)
		s.pool.New = func() any { return engine.NewMasker() }
	})
	return s.p, s.err
}

var (
	unescapeToken = strings.NewReplacer("~1", "/", "~0", "~")
	escapeToken   = strings.NewReplacer("~", "~0", "/", "~1")
)

// scrubPointers returns ps with every token masked (profile all, read as
// text). A token the engine cannot read is replaced whole. ps itself comes
// back when no token may hold a value, the common case.
func scrubPointers(ps []string) []string {
	p, err := scrubber.profile()
	var out []string // ps's copy, made at the first pointer that changes
	var ts *tokenScrubber
	for i, ptr := range ps {
		if ptr == "" || err == nil && len(ptr) <= maxPointerLen && ptr[0] == '/' && !mayHoldToken(p, ptr[1:]) {
			// the whole document; field names and indexes
			if out != nil {
				out[i] = ptr
			}
			continue
		}
		if out == nil {
			out = make([]string, len(ps))
			copy(out, ps[:i])
		}
		if ts == nil {
			ts = &tokenScrubber{p: p}
			if err == nil {
				ts.m = scrubber.pool.Get().(*engine.Masker)
				defer scrubber.pool.Put(ts.m)
			}
		}
		out[i] = ts.pointer(ptr)
	}
	if out == nil {
		return ps
	}
	return out
}

// tokenScrubber masks the tokens of pointers, each distinct one once.
type tokenScrubber struct {
	p    *engine.Profile
	m    *engine.Masker // nil: the engine could not be set up
	memo map[string]string
	b    strings.Builder
}

// pointer masks ptr's tokens and bounds its length. A module's text that
// does not start with "/" is read as if it did.
func (ts *tokenScrubber) pointer(ptr string) string {
	toks := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	n := 0
	for k, tok := range toks {
		toks[k] = ts.token(tok)
		n += 1 + len(toks[k])
	}
	b := &ts.b
	b.Reset()
	for _, v := range toks {
		if n > maxPointerLen && b.Len()+1+len(v) > maxPointerLen-len(truncatedToken) {
			b.WriteString(truncatedToken)
			break
		}
		b.WriteByte('/')
		b.WriteString(v)
	}
	return b.String()
}

// token masks one escaped token: decoded (~1 is /, ~0 is ~), masked,
// escaped again.
func (ts *tokenScrubber) token(tok string) string {
	if ts.m != nil && !ts.p.MayHold(tok) {
		// no byte a detector starts on ("~" and "/" start none, so the
		// escaped token says what the decoded one would)
		return tok
	}
	if v, ok := ts.memo[tok]; ok {
		return v
	}
	if ts.memo == nil {
		ts.memo = map[string]string{}
	}
	v := "[REDACTED:UNMASKABLE]"
	if ts.m != nil {
		raw := tok
		if strings.IndexByte(tok, '~') >= 0 {
			raw = unescapeToken.Replace(tok)
		}
		if r, err := ts.m.Mask(ts.p, engine.Text, nil, []byte(raw), true); err == nil {
			if string(r.Out) == raw {
				v = tok
			} else {
				v = escapeToken.Replace(string(r.Out))
			}
		}
	}
	ts.memo[tok] = v
	return v
}

// mayHoldToken reports whether one of the "/"-separated tokens of ptr may
// hold a value.
func mayHoldToken(p *engine.Profile, ptr string) bool {
	for {
		k := strings.IndexByte(ptr, '/')
		if k < 0 {
			return p.MayHold(ptr)
		}
		if p.MayHold(ptr[:k]) {
			return true
		}
		ptr = ptr[k+1:]
	}
}

// cutPointer keeps the whole tokens of ptr that fit in maxPointerLen and
// ends in /[TRUNCATED]; the result is a new string (not a substring).
func cutPointer(ptr string) string {
	end := 0
	for k := 1; k < len(ptr); k++ {
		if ptr[k] == '/' {
			if k > maxPointerLen-len(truncatedToken) {
				break
			}
			end = k
		}
	}
	return ptr[:end] + truncatedToken
}
