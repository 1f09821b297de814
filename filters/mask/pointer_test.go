package mask

import (
	"strconv"
	"strings"
	"testing"

	"github.com/custos-dev/custos/filters/mask/engine"
)

// A pointer is made of keys, and keys can be values: every token is masked
// before a pointer leaves the engine, escapes decoded first.
func TestPointersAreMaskedTokenByToken(t *testing.T) {
	long := strings.Repeat("k", 300)
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"/customers/0/card", "/customers/0/card"},
		{"/4111111111111111/cvv", "/[REDACTED:CARD]/cvv"},
		{"/accounts/DE89370400440532013000/balance", "/accounts/[REDACTED:IBAN]/balance"},
		{"/by_email/ann@example.com/card", "/by_email/[REDACTED:EMAIL]/card"},
		// "a/4111…" as a key: read escaped, the digits run on from the 1 of ~1
		{"/a~14111111111111111/x", "/a~1[REDACTED:CARD]/x"},
		{"/~0~01/x", "/~0~01/x"},
		// NDJSON and CSV pointers are numbers
		{"/12/card", "/12/card"},
		{"/3/4", "/3/4"},
		// a token the engine cannot read as text is replaced whole
		{"/a/b\x01c 4111111111111111", "/a/[REDACTED:UNMASKABLE]"},
		// a module's pointer that does not start with "/"
		{"123-45-6789", "/[REDACTED:SSN]"},
		// a long pointer keeps whole tokens and says it was cut
		{"/" + long + "/" + long + "/" + long + "/" + long, "/" + long + "/" + long + "/" + long + truncatedToken},
		{"/" + strings.Repeat("9", 2000), truncatedToken},
	} {
		got := scrubPointers([]string{c.in})[0]
		if got != c.want {
			t.Errorf("scrubPointers(%.60q) = %.80q, want %.80q", c.in, got, c.want)
		}
		if len(got) > maxPointerLen {
			t.Errorf("scrubPointers(%.60q) is %d bytes", c.in, len(got))
		}
	}
}

// Through the built-in module: a document keyed by card number is masked,
// key and value, and reports where without the number (the key's own
// pointer, then the values below it).
func TestDetailsNeverNameAKeyThatIsAValue(t *testing.T) {
	e := builtinEngine(t)
	body := []byte(`{"4111111111111111":{"card":"5500000000000004"},"ok":{"iban":"DE89370400440532013000"}}`)
	out, s, err := maskBody(t, e, NewProfile("pci"), Body{ContentType: "application/json"}, body, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"[REDACTED:CARD]":{"card":"[REDACTED:CARD]"},"ok":{"iban":"[REDACTED:IBAN]"}}`; string(out) != want {
		t.Fatalf("masked %d bytes, not as expected", len(out))
	}
	d := s.Details()
	want := []string{"/[REDACTED:CARD]", "/[REDACTED:CARD]/card", "/ok/iban"}
	if strings.Join(d.Pointers, " ") != strings.Join(want, " ") || d.Counts["card"]["redact"] != 2 {
		t.Fatalf("pointers %q, want %q; counts %v", d.Pointers, want, d.Counts)
	}
}

// FuzzScrubPointers: what comes out is bounded and already masked (a second
// pass changes nothing), whatever a module reported.
func FuzzScrubPointers(f *testing.F) {
	for _, s := range []string{"", "/a/b", "/4111111111111111/x", "/a~14111111111111111", "x@y.io", "/~", "/" + strings.Repeat("1234 ", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		out := scrubPointers([]string{p})[0]
		if len(out) > maxPointerLen {
			t.Fatalf("%d bytes", len(out))
		}
		if p != "" && !strings.HasPrefix(out, "/") {
			t.Fatalf("%q -> %q", p, out)
		}
		if again := scrubPointers([]string{out})[0]; again != out {
			t.Fatalf("not stable: %q -> %q -> %q", p, out, again)
		}
	})
}

// A stream holds at most 1,000 pointers of at most 1,024 bytes, however
// long the keys a module reports, and none of them keeps a large report's
// bytes alive.
func TestStreamBoundsLongPointers(t *testing.T) {
	s := &stream{u: &union{}}
	key := strings.Repeat("k", 1<<20)
	for range 3 {
		var r engine.Report
		for k := range 400 {
			r.Pointers = append(r.Pointers, "/"+key+"/"+strconv.Itoa(k), "/a/"+strconv.Itoa(k))
		}
		s.add(r)
	}
	d := s.moduleDetails()
	held := 0
	for _, p := range d.Pointers {
		held += len(p)
		if len(p) > maxPointerLen {
			t.Fatalf("a pointer of %d bytes", len(p))
		}
	}
	if len(d.Pointers) != maxPointers || d.PointersDropped != 1400 || d.Pointers[0] != truncatedToken || d.Pointers[1] != "/a/0" {
		t.Fatalf("%d pointers, %d dropped, first %.40q %.40q", len(d.Pointers), d.PointersDropped, d.Pointers[0], d.Pointers[1])
	}
	if got := cutPointer("/a/" + key + "/b"); got != "/a"+truncatedToken {
		t.Fatalf("cutPointer: %.40q", got)
	}
	t.Logf("%d pointers, %d bytes held", len(d.Pointers), held)
}
