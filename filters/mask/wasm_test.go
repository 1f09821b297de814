package mask

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
)

var (
	sharedOnce sync.Once
	shared     *WASM
	sharedErr  error
)

// builtinEngine is one WASM engine with the built-in module for the tests
// that do not break instances.
func builtinEngine(t testing.TB) *WASM {
	t.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = NewWASM(context.Background(), Options{
			HMACKey: []byte("test key"),
			Profiles: map[string]Spec{
				"orders": {Config: engineConfig(`{"entities":["card"],"ignore_fields":{"order_id":["card"]}}`)},
				"loose":  {Config: engineConfig(`{"entities":["card"]}`), BestEffort: true},
			},
		})
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// maskBody masks body through e in chunks of n bytes (0: one chunk).
func maskBody(t testing.TB, e Engine, p Profile, b Body, body []byte, n int) ([]byte, Stream, error) {
	t.Helper()
	s, err := e.Open(p, b)
	if err != nil {
		return nil, nil, err
	}
	if n <= 0 {
		n = len(body) + 1
	}
	var out []byte
	for {
		k := min(n, len(body))
		end := k == len(body)
		o, err := s.Mask(body[:k], end)
		if err != nil {
			return out, s, err
		}
		out = append(out, o...)
		body = body[k:]
		if end {
			return out, s, nil
		}
	}
}

const card = "4111111111111111"

func TestWASMMasksJSON(t *testing.T) {
	e := builtinEngine(t)
	body := []byte(`{"customers":[{"name":"Ann","card":"4111 1111 1111 1111","iban":"DE89370400440532013000","ssn":"123-45-6789","note":"pay \u0034111111111111111 now"}],"order_id":"` + card + `"}`)
	out, s, err := maskBody(t, e, NewProfile("pci", "orders"), Body{ContentType: "application/json; charset=utf-8"}, body, 7)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"4111 1111", "DE89370400440532013000", "123-45-6789", `\u0034111`} {
		if bytes.Contains(out, []byte(v)) {
			t.Errorf("a %d-byte value is still in the output", len(v))
		}
	}
	if bytes.Contains(out, []byte(card)) {
		t.Error("pci+orders: the order id is a card for pci, which does not ignore the field (masking adds up)")
	}
	d := s.Details()
	if d.Counts["card"]["redact"] < 2 || d.Counts["iban"]["redact"] != 1 || d.Counts["ssn"]["redact"] != 1 {
		t.Errorf("counts %v", d.Counts)
	}
	if got := s.Report().Header(); !strings.HasPrefix(got, "card=") {
		t.Errorf("header %q", got)
	}
	t.Logf("pointers %v", d.Pointers)
}

func TestWASMOrderIDIsNotACardWhenTheProfileSaysSo(t *testing.T) {
	e := builtinEngine(t)
	body := []byte(`{"order_id":"` + card + `","card":"` + card + `"}`)
	out, _, err := maskBody(t, e, NewProfile("orders"), Body{ContentType: "application/json"}, body, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"order_id":"` + card + `","card":"[REDACTED:CARD]"}`; string(out) != want {
		t.Fatalf("got %d bytes, not the order id kept and the card masked", len(out))
	}
}

func TestWASMValueSplitAcrossChunks(t *testing.T) {
	e := builtinEngine(t)
	for _, ct := range []string{"application/json", "text/plain", "text/csv", "application/x-ndjson"} {
		body := []byte("{\"c\":\"" + card + "\"}\n")
		if ct == "text/plain" {
			body = []byte("card " + card + " end")
		} else if ct == "text/csv" {
			body = []byte("id,card\n1," + card + "\n")
		}
		for cut := 1; cut < len(body); cut++ {
			s, err := e.Open(NewProfile("pci"), Body{ContentType: ct})
			if err != nil {
				t.Fatal(err)
			}
			a, err1 := s.Mask(body[:cut], false)
			b, err2 := s.Mask(body[cut:], true)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s cut %d: %v %v", ct, cut, err1, err2)
			}
			if out := append(a, b...); bytes.Contains(out, []byte(card)) || !bytes.Contains(out, []byte("[REDACTED:CARD]")) {
				t.Fatalf("%s cut at %d: the card split across chunks was not masked", ct, cut)
			}
		}
	}
}

func TestWASMGzipBodyIsDecodedMaskedAndReencoded(t *testing.T) {
	e := builtinEngine(t)
	var plain bytes.Buffer
	for i := 0; i < 2000; i++ {
		plain.WriteString(`{"i":1,"card":"` + card + `","text":"lorem ipsum dolor sit amet"}` + "\n")
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	out, s, err := maskBody(t, e, NewProfile("pci"), Body{ContentType: "application/x-ndjson", ContentEncoding: "gzip"}, gz.Bytes(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got, []byte(card)) || s.Report()["card"] != 2000 {
		t.Fatalf("gzip body: %d cards masked, want 2000, none left", s.Report()["card"])
	}
	if want := bytes.ReplaceAll(plain.Bytes(), []byte(card), []byte("[REDACTED:CARD]")); !bytes.Equal(got, want) {
		t.Fatal("the decoded output is not the masked input")
	}
	// a truncated gzip body fails, never passes through
	if _, _, err := maskBody(t, e, NewProfile("pci"), Body{ContentType: "application/json", ContentEncoding: "gzip"}, gz.Bytes()[:gz.Len()/2], 100); err == nil {
		t.Fatal("a truncated gzip body was accepted")
	}
}

func TestWASMStrictRefusesWhatItCannotRead(t *testing.T) {
	e := builtinEngine(t)
	for _, b := range []Body{{ContentType: "image/png"}, {ContentType: "application/octet-stream"}, {ContentType: "application/json", ContentEncoding: "br"}} {
		if _, err := e.Open(NewProfile("pci"), b); !errors.Is(err, ErrUnreadable) {
			t.Errorf("%+v: %v, want ErrUnreadable", b, err)
		}
		s, err := e.Open(NewProfile("loose"), b)
		if err != nil {
			t.Fatalf("best effort %+v: %v", b, err)
		}
		if !s.Details().Unread {
			t.Errorf("best effort %+v: not marked unread", b)
		}
	}
	// a body that lies about its type fails
	for _, c := range []struct{ ct, body string }{
		{"application/json", "card " + card},
		{"text/plain", "\x00\x01\x02binary " + card},
	} {
		if _, _, err := maskBody(t, e, NewProfile("pci"), Body{ContentType: c.ct}, []byte(c.body), 0); !errors.Is(err, ErrFailed) {
			t.Errorf("%s body of another type: %v, want ErrFailed", c.ct, err)
		}
	}
	if _, err := e.Open(NewProfile("nope"), Body{}); !errors.Is(err, ErrUnknownProfile) {
		t.Errorf("unknown profile: %v", err)
	}
}
