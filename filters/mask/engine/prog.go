package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp/syntax"
	"unicode"
)

// Prog is a custom pattern's regular expression compiled by Go's
// regexp/syntax (parsed as regexp.Compile parses, simplified, compiled),
// in a form a module written in another language can run without a
// regular expression engine of its own: the host sends it with each
// pattern (docs/masking-abi.md). This engine compiles the regex itself and
// ignores it.
type Prog struct {
	// Start is the index of the first instruction.
	Start int `json:"start"`
	// Inst are the instructions.
	Inst []Inst `json:"inst"`
}

// Inst is one instruction, in JSON [op, out, arg, [lo, hi, …]]: op is
// regexp/syntax's InstOp; Runes are inclusive ranges, case folding
// already expanded into them.
type Inst struct {
	Op    uint8
	Out   uint32
	Arg   uint32
	Runes []rune
}

// MarshalJSON writes i as [op, out, arg, [lo, hi, …]].
func (i Inst) MarshalJSON() ([]byte, error) {
	r := i.Runes
	if r == nil {
		r = []rune{}
	}
	return json.Marshal([]any{i.Op, i.Out, i.Arg, r})
}

// UnmarshalJSON reads [op, out, arg, [lo, hi, …]].
func (i *Inst) UnmarshalJSON(b []byte) error {
	var a []json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if len(a) != 4 {
		return errors.New("instruction: want [op, out, arg, runes]")
	}
	for k, dst := range []any{&i.Op, &i.Out, &i.Arg, &i.Runes} {
		if err := json.Unmarshal(a[k], dst); err != nil {
			return fmt.Errorf("instruction: %w", err)
		}
	}
	if len(i.Runes)%2 != 0 {
		return errors.New("instruction: runes are not pairs")
	}
	return nil
}

// maxProg bounds a pattern's program, as regexp bounds its own.
const maxProg = 10000

// CompileProg compiles regex as regexp.Compile does, to a Prog.
func CompileProg(regex string) (*Prog, error) {
	re, err := syntax.Parse(regex, syntax.Perl)
	if err != nil {
		return nil, err
	}
	p, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, err
	}
	if len(p.Inst) > maxProg {
		return nil, errors.New("regular expression too large")
	}
	out := &Prog{Start: p.Start, Inst: make([]Inst, len(p.Inst))}
	for k, in := range p.Inst {
		x := Inst{Op: uint8(in.Op), Out: in.Out, Arg: in.Arg}
		switch in.Op {
		case syntax.InstRune:
			x.Runes = runeRanges(in.Rune, syntax.Flags(in.Arg)&syntax.FoldCase != 0)
			x.Arg = 0
		case syntax.InstRune1:
			x.Runes = []rune{in.Rune[0], in.Rune[0]}
		}
		out.Inst[k] = x
	}
	return out, nil
}

// runeRanges is an InstRune's runes as inclusive ranges. A single rune is
// a literal (regexp/syntax's Inst.MatchRunePos): under FoldCase it also
// matches every rune of its simple case-folding orbit.
func runeRanges(r []rune, fold bool) []rune {
	if len(r) != 1 {
		return append([]rune{}, r...)
	}
	out := []rune{r[0], r[0]}
	if fold {
		for f := unicode.SimpleFold(r[0]); f != r[0]; f = unicode.SimpleFold(f) {
			out = append(out, f, f)
		}
	}
	return out
}
