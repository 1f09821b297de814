package engine

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"regexp"
	"testing"
	"unicode/utf8"
)

// pike runs a Prog as docs/masking-abi.md tells a module to: a Pike VM
// with leftmost-first priority, and regexp's FindAllIndex loop. It is the
// reference a module's matcher is held to; the test below holds it to
// regexp.
func pike(p *Prog, t []byte) [][2]int {
	isWord := func(r rune) bool {
		return r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
	}
	runeAt := func(i int) (rune, int) {
		if i >= len(t) {
			return -1, 0
		}
		return utf8.DecodeRune(t[i:])
	}
	runeBefore := func(i int) rune {
		if i == 0 {
			return -1
		}
		r, _ := utf8.DecodeLastRune(t[:i])
		return r
	}
	empty := func(i int) uint32 {
		var f uint32
		before, after := runeBefore(i), rune(-1)
		if i < len(t) {
			after, _ = runeAt(i)
		}
		if before < 0 {
			f |= 4 | 1
		}
		if before == '\n' {
			f |= 1
		}
		if after < 0 {
			f |= 8 | 2
		}
		if after == '\n' {
			f |= 2
		}
		if isWord(before) != isWord(after) {
			f |= 16
		} else {
			f |= 32
		}
		return f
	}
	type thread struct{ pc, start int }
	// add follows the empty transitions from pc in priority order.
	var add func(q *[]thread, seen []bool, pc, start, pos int)
	add = func(q *[]thread, seen []bool, pc, start, pos int) {
		if seen[pc] {
			return
		}
		seen[pc] = true
		in := p.Inst[pc]
		switch in.Op {
		case 0, 1: // Alt, AltMatch
			add(q, seen, int(in.Out), start, pos)
			add(q, seen, int(in.Arg), start, pos)
		case 2, 6: // Capture, Nop
			add(q, seen, int(in.Out), start, pos)
		case 3: // EmptyWidth
			if in.Arg&^empty(pos) == 0 {
				add(q, seen, int(in.Out), start, pos)
			}
		case 5: // Fail
		default:
			*q = append(*q, thread{pc, start})
		}
	}
	find := func(from int) (int, int, bool) {
		var cur, next []thread
		ms, me, matched := 0, 0, false
		for pos := from; ; {
			if !matched {
				seen := make([]bool, len(p.Inst))
				for _, th := range cur {
					seen[th.pc] = true
				}
				// a new thread at pos, at the lowest priority
				add(&cur, seen, p.Start, pos, pos)
			}
			r, w := runeAt(pos)
			if len(cur) == 0 && (matched || w == 0) {
				break
			}
			seen := make([]bool, len(p.Inst))
			next = next[:0]
			for _, th := range cur {
				in := p.Inst[th.pc]
				ok := false
				switch in.Op {
				case 4: // Match
					ms, me, matched = th.start, pos, true
				case 7, 8: // Rune, Rune1
					for k := 0; k+1 < len(in.Runes); k += 2 {
						if r >= in.Runes[k] && r <= in.Runes[k+1] {
							ok = true
						}
					}
				case 9: // RuneAny
					ok = r >= 0
				case 10: // RuneAnyNotNL
					ok = r >= 0 && r != '\n'
				}
				if in.Op == 4 {
					break // lower-priority threads are cut off
				}
				if ok {
					add(&next, seen, int(in.Out), th.start, pos+w)
				}
			}
			if w == 0 {
				break
			}
			pos += w
			cur, next = next, cur
		}
		return ms, me, matched
	}
	var out [][2]int
	for pos, prevEnd := 0, -1; pos <= len(t); {
		s, e, ok := find(pos)
		if !ok {
			break
		}
		accept := true
		if e == s {
			if s == prevEnd {
				accept = false
			}
			_, w := runeAt(pos)
			if w == 0 {
				w = 1
			}
			pos += w
		} else {
			pos = e
		}
		prevEnd = e
		if accept {
			out = append(out, [2]int{s, e})
		}
	}
	return out
}

// A Prog, sent as JSON and run by the reference VM, finds what regexp
// finds: case folding, classes, anchors, word boundaries, alternation
// priority, repetition, invalid UTF-8.
func TestProgMatchesAsRegexpDoes(t *testing.T) {
	patterns := []string{
		`EMP-[0-9]{6}`, `(?i)emp-\d{3,6}`, `\bacct\s*#?\d+\b`, `^[A-Z]{2}\d+$`, `(?m)^id:\w+$`,
		`a|ab`, `ab|a`, `a*?b`, `(a+)(b*)`, `x*`, `\Bfoo`, `k\b`, `(?i)straße`, `[^a-z]+`,
		`(?s)<.+?>`, `<.+>`, `\pL{2}\d`, `(?i)[k-m]`, `é+`, `\A\d|\d\z`, `(?U)a+`,
	}
	rng := rand.New(rand.NewPCG(7, 9))
	alphabet := []string{"a", "b", "E", "M", "P", "-", "0", "1", "9", "k", "K", "\u212a", "x", " ", "\n", "#",
		"acct", "emp-123456", "EMP-654321", "<", ">", "é", "ß", "SS", "\xff", "_", "id:", "straße", "STRASSE", "foo"}
	for _, pat := range patterns {
		re := regexp.MustCompile(pat)
		p, err := CompileProg(pat)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Prog
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		for n := range 1500 {
			var in []byte
			for range rng.IntN(12) {
				in = append(in, alphabet[rng.IntN(len(alphabet))]...)
			}
			var want [][2]int
			for _, loc := range re.FindAllIndex(in, -1) {
				want = append(want, [2]int{loc[0], loc[1]})
			}
			if got := pike(&back, in); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s on %q (case %d): the program finds %v, regexp %v", pat, in, n, got, want)
			}
		}
	}
	if _, err := CompileProg(`a(`); err == nil {
		t.Fatal("a bad regex compiled")
	}
}
