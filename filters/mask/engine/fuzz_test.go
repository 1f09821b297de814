package engine

import (
	"encoding/json"
	"testing"
)

// FuzzMask: hostile bodies never panic the tokenizers or detectors, and what
// comes out, whole or chunked, holds no card the engine itself would find
// (masking its own output finds nothing).
func FuzzMask(f *testing.F) {
	seeds := []string{
		`{"card":"4111 1111 1111 1111","n":4111111111111111,"e":"\u0034111111111111111"}`,
		"pay 4111-1111-1111-1111 now, DE89 3704 0044 0532 0130 00, 123-45-6789",
		"id,card\n1,4111111111111111\n\"x\"\"y\",\"4111 1111 1111 1111\"\n",
		`[{"a":[1,2,{"b":"5500 0000 0000 0004"}]}]` + "\n" + `{"c":"378282246310005"}`,
		"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----",
		`{"k\u00e9y":"\ud83d\ude00 4111111111111111"}`,
		`{"4111111111111111":{"x 5500 0000 0000 0004":[1]},"\u0034111111111111111":2}`,
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i%4), uint8(7))
	}
	cfg, _ := Builtin("all")
	p, err := Compile(cfg)
	if err != nil {
		f.Fatal(err)
	}
	cards, _ := Compile(Config{Entities: []string{Card}})
	f.Fuzz(func(t *testing.T, body []byte, format, chunk uint8) {
		fm := Format(format % 4)
		m := NewMasker()
		r, err := m.Mask(p, fm, nil, body, true)
		if err != nil {
			return
		}
		whole := append([]byte(nil), r.Out...)
		if n := cardsIn(m, cards, fm, whole); n > 0 {
			t.Fatalf("%d cards left in the output", n)
		}
		if (fm == JSON) && json.Valid(body) && !json.Valid(whole) {
			t.Fatal("valid JSON in, invalid JSON out")
		}
		out, err := maskChunks(t, m, p, fm, string(body), int(chunk%64)+1)
		if err != nil {
			return
		}
		if n := cardsIn(m, cards, fm, []byte(out)); n > 0 {
			t.Fatalf("chunked: %d cards left in the output", n)
		}
	})
}

// cardsIn counts the cards the engine finds in b, read as format f (a
// JSON string's escapes decoded, as the agent reads them).
func cardsIn(m *Masker, cards *Profile, f Format, b []byte) int {
	if _, err := m.Mask(cards, f, nil, b, true); err != nil {
		return 0
	}
	n := 0
	for _, c := range m.Report(cards).Counts {
		n += c.N
	}
	return n
}

// FuzzMayHold: where MayHold says no, masking finds nothing and fails
// nothing (it is the pointer scrubber's fast path).
func FuzzMayHold(f *testing.F) {
	for _, s := range []string{"customers", "0", "1234567", "12345678", "card_number", "a@b.io", "x=y", "bearer x", "-----", "DE89370400440532013000", "+14155552671", "\x01"} {
		f.Add(s)
	}
	cfg, _ := Builtin("all")
	p, err := Compile(cfg)
	if err != nil {
		f.Fatal(err)
	}
	m := NewMasker()
	f.Fuzz(func(t *testing.T, s string) {
		if p.MayHold(s) {
			return
		}
		r, err := m.Mask(p, Text, nil, []byte(s), true)
		if err != nil || string(r.Out) != s {
			t.Fatalf("MayHold said no, masking gave %v (changed: %v)", err, string(r.Out) != s)
		}
	})
}
