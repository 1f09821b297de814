package mask

import (
	"strings"
	"sync"

	"github.com/custos-dev/custos/filters/mask/engine"
)

// A pointer is made of a document's keys, and a key can be a value: a
// document keyed by account or card number ({"4111…": {...}}) names it in
// the pointer of every value masked below it. So a report's pointers are
// masked too, token by token, with profile all, whatever module produced
// them: the record stage gets /[REDACTED:CARD]/cvv, never the number.

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
// text). A token the engine cannot read is replaced whole.
func scrubPointers(ps []string) []string {
	if len(ps) == 0 {
		return ps
	}
	p, err := scrubber.profile()
	var m *engine.Masker
	if err == nil {
		m = scrubber.pool.Get().(*engine.Masker)
		defer scrubber.pool.Put(m)
	}
	memo := map[string]string{}
	token := func(tok string) string {
		if v, ok := memo[tok]; ok {
			return v
		}
		v := "[REDACTED:UNMASKABLE]"
		if m != nil {
			raw := tok
			if strings.IndexByte(tok, '~') >= 0 {
				raw = unescapeToken.Replace(tok)
			}
			if r, err := m.Mask(p, engine.Text, nil, []byte(raw), true); err == nil {
				if string(r.Out) == raw {
					v = tok
				} else {
					v = escapeToken.Replace(string(r.Out))
				}
			}
		}
		memo[tok] = v
		return v
	}
	out := make([]string, len(ps))
	var b strings.Builder
	for i, ptr := range ps {
		if ptr == "" {
			continue // the whole document
		}
		// A pointer is "/"-separated tokens; a module's text that does not
		// start with "/" is read as if it did.
		toks := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
		n := 0
		for k, tok := range toks {
			toks[k] = token(tok)
			n += 1 + len(toks[k])
		}
		b.Reset()
		for _, v := range toks {
			if n > maxPointerLen && b.Len()+1+len(v) > maxPointerLen-len(truncatedToken) {
				b.WriteString(truncatedToken)
				break
			}
			b.WriteByte('/')
			b.WriteString(v)
		}
		out[i] = b.String()
	}
	return out
}
