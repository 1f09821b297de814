package audit

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// FuzzFrames feeds untrusted bytes (a segment tail after a crash, or an
// attacker's) to the frame reader: it never panics, never returns a frame
// whose checksum fails, and re-framing what it returned gives back exactly
// the bytes it consumed.
func FuzzFrames(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendFrame(nil, []byte(`{"a":1}`)))
	f.Add(appendFrame(appendFrame(nil, []byte("one")), []byte("two"))[:15])
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := newFrameReader(bytes.NewReader(b), 0)
		var again []byte
		for {
			p, off, err := fr.next()
			if err == io.EOF {
				if off != int64(len(b)) {
					t.Fatalf("clean end at %d of %d", off, len(b))
				}
				break
			}
			if err == errTorn {
				if off > int64(len(b)) {
					t.Fatalf("torn at %d of %d", off, len(b))
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p) == 0 || len(p) > MaxRecordSize {
				t.Fatalf("frame of %d bytes", len(p))
			}
			again = appendFrame(again, p)
		}
		if !bytes.Equal(again, b[:len(again)]) {
			t.Fatal("re-framed bytes differ from the input")
		}
	})
}

// FuzzDecodeEvent feeds untrusted bytes to the event decoder: it never
// panics, and what it accepts encodes canonically: decoding the encoding
// gives the same encoding again.
func FuzzDecodeEvent(f *testing.F) {
	e := Event{Kind: Response, Time: time.Unix(1, 2), LogID: "l", Index: 3, SessionID: "s", Session: "n", RequestID: "r",
		Actor:    Actor{UID: "i/s", Type: "workload", Groups: []string{"g"}},
		Request:  &HTTPRequest{Method: "GET", Path: "/p\u00e9\x01"},
		Response: &HTTPResponse{Code: 200}, Masking: &Masking{Profile: "pci", Counts: map[string]int{"card": 2, "\u00e9": 1}},
		Decision: &DecisionInfo{ID: "d", Reasons: []string{"x"}}, Approval: &Approval{ID: "a", State: "pending"},
		Change: &Change{Revision: "r2"}, Started: time.Unix(0, 1), Finished: time.Unix(2, 0)}
	f.Add(e.Encode())
	f.Add([]byte(`{"class_uid":6003,"time":"2026-01-01T00:00:00Z","custos":{"kind":"decision","index":0}}`))
	f.Add([]byte(`{"class_uid":6003,"custos":{"kind":"decision","index":-1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			return
		}
		enc := e.Encode()
		e2, err := DecodeEvent(enc)
		if err != nil {
			t.Fatalf("decoding an encoding failed: %v\n%s", err, enc)
		}
		if enc2 := e2.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}
