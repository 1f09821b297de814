package engine

import (
	"reflect"
	"testing"
)

// FuzzParseReport: a report comes from the masking module, which may be a
// replacement the host cannot vouch for. Whatever the bytes, ParseReport
// does not panic, agrees with a plain one-pass reading of the wire form,
// and keeps nothing of b (the caller reuses it).
func FuzzParseReport(f *testing.F) {
	cfg, _ := Builtin("all")
	p, err := Compile(cfg)
	if err != nil {
		f.Fatal(err)
	}
	m := NewMasker()
	if _, err := m.Mask(p, JSON, nil, []byte(`{"a":[{"card":"4111 1111 1111 1111","e":"x@example.com"}],"b":"DE89 3704 0044 0532 0130 00"}`), true); err != nil {
		f.Fatal(err)
	}
	real := m.AppendReport(nil, p)
	if len(m.Report(p).Pointers) != 3 {
		f.Fatalf("the seed report has %d pointers, want 3", len(m.Report(p).Pointers))
	}
	f.Add(real)
	f.Add([]byte{})
	f.Add([]byte("d\x05"))
	f.Add([]byte("c\x04card\x06redact\x02p\x02/ad\x01"))
	f.Add([]byte("p\x05/a"))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wantErr := parseReportPlain(b)
		got, err := ParseReport(b)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("error %v, the plain reading's %v", err, wantErr)
		}
		if err != nil {
			if !reflect.DeepEqual(got, Report{}) {
				t.Fatalf("a failed parse returned %+v", got)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, the plain reading %+v", got, want)
		}
		for k := range b {
			b[k] ^= 0xff
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatal("the report changed with the bytes it was read from")
		}
	})
}

// parseReportPlain reads the wire form one record at a time, a string per
// name and pointer.
func parseReportPlain(b []byte) (Report, error) {
	var rep Report
	r := reader{b: b}
	for len(r.b) > 0 && !r.bad {
		tag := r.b[0]
		r.b = r.b[1:]
		switch tag {
		case 'c':
			e := string(r.bytes())
			op := string(r.bytes())
			n := r.uvarint()
			rep.Counts = append(rep.Counts, Count{Entity: e, Operator: op, N: int(n)})
		case 'p':
			rep.Pointers = append(rep.Pointers, string(r.bytes()))
		case 'd':
			rep.Dropped += int(r.uvarint())
		default:
			return Report{}, ErrReport
		}
	}
	if r.bad {
		return Report{}, ErrReport
	}
	return rep, nil
}
