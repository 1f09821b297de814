package engine

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestSWARMasksAreExact checks the eight-byte masks against the byte
// tables on random and boundary bytes.
func TestSWARMasksAreExact(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	f := newPrefilter(clDigit | clLead | clAt | clEq | clDash | clSpace | clCtrl)
	var b [8]byte
	for n := 0; n < 200000; n++ {
		for k := range b {
			if n%2 == 0 {
				b[k] = byte(r.IntN(256))
			} else {
				b[k] = "09/:\"\\ @=-+(\x00\x1f\x20\x7f\x80\xffrReE"[r.IntN(22)]
			}
		}
		x := binary.LittleEndian.Uint64(b[:])
		d, s, c := digitMask(x), stringStops(x), f.candidates(x)
		first := -1
		for k, ch := range b {
			bit := uint64(0x80) << (8 * k)
			if (d&bit != 0) != isDigit(ch) {
				t.Fatalf("digitMask(%q) byte %d", b, k)
			}
			if (s&bit != 0) != (ch == '"' || ch == '\\' || ch < 0x20) {
				t.Fatalf("stringStops(%q) byte %d", b, k)
			}
			want := cls[ch]&(clDigit|clLead|clAt|clEq|clCtrl) != 0 || ch < 0x20 ||
				ch == ' ' && (k == 0 || b[k-1]|0x20 == 'r' && (k == 1 || b[k-2]|0x20 == 'e')) ||
				ch == '-' && (k == 7 || b[k+1] == '-')
			if (c&bit != 0) != want {
				t.Fatalf("candidates(%q) byte %d", b, k)
			}
			if want && first < 0 {
				first = k
			}
		}
		if c != 0 && firstByte(c) != first {
			t.Fatalf("firstByte(%q) = %d, want %d", b, firstByte(c), first)
		}
	}
}
