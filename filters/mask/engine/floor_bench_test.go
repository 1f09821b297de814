package engine

import (
	"bytes"
	"testing"
)

// BenchmarkFloor measures the scanning primitives alone over 64 KiB of
// text with nothing to find: the ceiling any detector built on them can
// reach, natively and (GOOS=wasip1, under wazero) in the guest.
func BenchmarkFloor(b *testing.B) {
	buf := bytes.Repeat([]byte("called about the last statement, no action needed "), 64<<10/50)
	pf := newPrefilter(clDigit | clAt | clLead)
	b.Run("skip-swar", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			if pf.skip(buf, 0) < len(buf)-8 {
				b.Fatal("found")
			}
		}
	})
	b.Run("scanString", func(b *testing.B) {
		s := append(append([]byte(nil), buf...), '"')
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			if _, _, _, ok, _ := scanString(s, 0, &pf); !ok {
				b.Fatal("no end")
			}
		}
	})
	b.Run("bytewise-table", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			for _, c := range buf {
				if cls[c]&pf.trig != 0 {
					b.Fatal("found")
				}
			}
		}
	})
	b.Run("sum-bytes", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		var s byte
		for b.Loop() {
			for _, c := range buf {
				s += c
			}
		}
		_ = s
	})
	b.Run("IndexByte", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			if bytes.IndexByte(buf, '@') >= 0 {
				b.Fatal("found")
			}
		}
	})
	b.Run("copy", func(b *testing.B) {
		dst := make([]byte, len(buf))
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			copy(dst, buf)
		}
	})
}

// BenchmarkJSONShapes masks 64 KiB documents of one shape each under
// profile all: where the tokenizer's and the detectors' time goes.
func BenchmarkJSONShapes(b *testing.B) {
	c, _ := Builtin("all")
	p := mustProfile(b, c)
	rec := map[string]string{
		"plain-strings": `{"name":"Customer Name","note":"called about the last statement, no action needed","city":"Springfield"}`,
		"short-strings": `{"a":"x","b":"y","c":"z","d":"w","e":"v","f":"u","g":"t","h":"s"}`,
		"numbers":       `{"id":1234567,"balance":12345.67,"count":42,"year":2026}`,
		"dates":         `{"created":"2026-03-01T10:20:30Z","updated":"2026-03-02T11:22:33Z"}`,
		"emails":        `{"email":"user.name@example.com","cc":"other@example.org"}`,
		"cards":         `{"card":"4111 1111 1111 1111","iban":"DE89370400440532013000","ssn":"123-45-6789"}`,
	}
	for _, name := range []string{"plain-strings", "short-strings", "numbers", "dates", "emails", "cards"} {
		var doc bytes.Buffer
		doc.WriteByte('[')
		for doc.Len() < 64<<10 {
			if doc.Len() > 1 {
				doc.WriteByte(',')
			}
			doc.WriteString(rec[name])
		}
		doc.WriteByte(']')
		d := doc.Bytes()
		b.Run(name, func(b *testing.B) {
			m := NewMasker()
			b.SetBytes(int64(len(d)))
			for b.Loop() {
				if _, err := m.Mask(p, JSON, nil, d, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
