package engine

import (
	"encoding/json"
	"strings"
	"testing"
)

func mustProfile(t testing.TB, c Config) *Profile {
	t.Helper()
	p, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// maskAll masks body in one call.
func maskAll(t testing.TB, m *Masker, p *Profile, f Format, body string) string {
	t.Helper()
	r, err := m.Mask(p, f, nil, []byte(body), true)
	if err != nil {
		t.Fatalf("mask: %v", err)
	}
	return string(r.Out)
}

// maskChunks masks body cut into pieces of size n, as a host does.
func maskChunks(t testing.TB, m *Masker, p *Profile, f Format, body string, n int) (string, error) {
	t.Helper()
	var out, pending, state []byte
	b := []byte(body)
	for len(b) > 0 || pending != nil {
		k := n
		if k > len(b) {
			k = len(b)
		}
		pending = append(pending, b[:k]...)
		b = b[k:]
		final := len(b) == 0
		r, err := m.Mask(p, f, state, pending, final)
		if err != nil {
			return "", err
		}
		out = append(out, r.Out...)
		state = append(state[:0], r.State...)
		pending = append(pending[:0], pending[r.Consumed:]...)
		if final {
			break
		}
	}
	return string(out), nil
}

func TestDetectors(t *testing.T) {
	all, _ := Builtin("all")
	p := mustProfile(t, all)
	m := NewMasker()
	cases := []struct{ in, want string }{
		{"card 4111 1111 1111 1111 ok", "card [REDACTED:CARD] ok"},
		{"card 4111-1111-1111-1111.", "card [REDACTED:CARD]."},
		{"card 4111111111111111", "card [REDACTED:CARD]"},
		{"amex 3782 822463 10005", "amex [REDACTED:CARD]"},
		{"bad 4111111111111112", "bad 4111111111111112"},
		{"long 41111111111111111111", "long 41111111111111111111"},
		{"iban DE89 3704 0044 0532 0130 00 x", "iban [REDACTED:IBAN] x"},
		{"iban GB82WEST12345698765432", "iban [REDACTED:IBAN]"},
		{"iban GB82WEST12345698765433", "iban GB82WEST12345698765433"},
		{"ssn 123-45-6789", "ssn [REDACTED:SSN]"},
		{"ssn 666-45-6789", "ssn 666-45-6789"},
		{"ssn 123-00-6789", "ssn 123-00-6789"},
		{"routing number 021000021", "routing number [REDACTED:ABA]"},
		{"order 021000021", "order 021000021"},
		{"mail John.Doe+x@Example.co.uk.", "mail [REDACTED:EMAIL]."},
		{"call (415) 555-2671 now", "call [REDACTED:PHONE] now"},
		{"call +44 20 7946 0958", "call [REDACTED:PHONE]"},
		{"call 415-555-2671", "call [REDACTED:PHONE]"},
		{"Authorization: Bearer abcdefghijklmnop.qrs", "Authorization: Bearer [REDACTED:BEARER]"},
		{"DefaultEndpointsProtocol=https;AccountName=a;AccountKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==;x", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=[REDACTED:AZURE_KEY];x"},
		{"https://a.blob.core.windows.net/c?sv=2020&sig=abc%2Bdefghij&se=1", "https://a.blob.core.windows.net/c?sv=2020&sig=[REDACTED:SAS]&se=1"},
		{"k -----BEGIN RSA PRIVATE KEY-----\nMIIabc\n-----END RSA PRIVATE KEY----- z", "k [REDACTED:PRIVATE_KEY] z"},
		{"2024-01-15T10:20:30Z 1718900000000 1234.56", "2024-01-15T10:20:30Z 1718900000000 1234.56"},
		// a long run of numbers: values astride the 24th group, after it,
		// and a '+' phone starting it are all read
		{"0 0 0 0 0 0 0 0 0 0 0 412 123 123 123 4 0 0 0 0 4334 1234 1234 1234 1", "0 0 0 0 0 0 0 0 0 0 0 [REDACTED:CARD] 0 0 0 0 [REDACTED:CARD]"},
		{strings.Repeat("7 ", 60) + "4111 1111 1111 1111 " + strings.Repeat("7 ", 60) + "123-45-6789", strings.Repeat("7 ", 60) + "[REDACTED:CARD] " + strings.Repeat("7 ", 60) + "[REDACTED:SSN]"},
		// (a '+' phone takes up to 15 digits, here 15 groups)
		{"+4 4 2 0 7 9 4 6 0 9 5 8 " + strings.Repeat("1 ", 30), "[REDACTED:PHONE] " + strings.Repeat("1 ", 27)},
	}
	for _, c := range cases {
		if got := maskAll(t, m, p, Text, c.in); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestJSON(t *testing.T) {
	c, _ := Builtin("all")
	c.IgnoreFields = map[string][]string{"order_id": {"card"}}
	p := mustProfile(t, c)
	m := NewMasker()
	in := `{"order_id":"4111111111111111","card":"4111111111111111","n":4111111111111111,"esc":"\u0034111111111111111","account_number":"12345678","list":[{"ssn":"123456789"}],"phone":"4155552671","ok":[true,false,null,1.5e3]}`
	want := `{"order_id":"4111111111111111","card":"[REDACTED:CARD]","n":"[REDACTED:CARD]","esc":"[REDACTED:CARD]","account_number":"[REDACTED:ACCOUNT]","list":[{"ssn":"[REDACTED:SSN]"}],"phone":"[REDACTED:PHONE]","ok":[true,false,null,1.5e3]}`
	if got := maskAll(t, m, p, JSON, in); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	rep := m.Report(p)
	if strings.Join(rep.Pointers, " ") != "/card /n /esc /account_number /list/0/ssn /phone" {
		t.Fatalf("pointers %v", rep.Pointers)
	}
	for n := 1; n < len(in); n++ {
		got, err := maskChunks(t, m, p, JSON, in, n)
		if err != nil || got != want {
			t.Fatalf("chunks of %d: %v\n got %s", n, err, got)
		}
	}
}

// A key can be a value: a document keyed by card, IBAN or e-mail has its
// keys masked as strings are (escapes read), the pointers name the masked
// key, and null drops the value from the key (a key cannot be null).
func TestJSONKeys(t *testing.T) {
	c, _ := Builtin("all")
	p := mustProfile(t, c)
	m := NewMasker()
	in := `{"accounts":{"DE89370400440532013000":{"card":"4111111111111111"},"\u0034111111111111111":1,"ann@example.com":[2],"card_number":"x","n 4111 1111 1111 1111 n":3}}`
	want := `{"accounts":{"[REDACTED:IBAN]":{"card":"[REDACTED:CARD]"},"[REDACTED:CARD]":1,"[REDACTED:EMAIL]":[2],"card_number":"x","n [REDACTED:CARD] n":3}}`
	if got := maskAll(t, m, p, JSON, in); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	rep := m.Report(p)
	if got := strings.Join(rep.Pointers, " "); got != "/accounts/[REDACTED:IBAN] /accounts/[REDACTED:IBAN]/card /accounts/[REDACTED:CARD] /accounts/[REDACTED:EMAIL] /accounts/n [REDACTED:CARD] n" {
		t.Fatalf("pointers %s", got)
	}
	for n := 1; n < len(in); n++ {
		got, err := maskChunks(t, m, p, JSON, in, n)
		if err != nil || got != want {
			t.Fatalf("chunks of %d: %v\n got %s", n, err, got)
		}
	}
	// null takes the value out of the key; hmac keeps keys apart
	c.Operators = map[string]string{"card": "null", "iban": "hmac"}
	c.HMACKey = []byte("k")
	p = mustProfile(t, c)
	got := maskAll(t, m, p, JSON, `{"x 4111111111111111":1,"GB82WEST12345698765432":2,"DE89370400440532013000":3}`)
	var keys map[string]int
	if err := json.Unmarshal([]byte(got), &keys); err != nil || keys["x "] != 1 || len(keys) != 3 || strings.Contains(got, "GB82") || strings.Contains(got, "DE89") {
		t.Fatalf("got %s", got)
	}
}

func TestTextChunks(t *testing.T) {
	all, _ := Builtin("all")
	p := mustProfile(t, all)
	m := NewMasker()
	// (two spaces join digit groups too: a chunk ending after them keeps
	// the run back)
	in := "pay 4111 1111 1111 1111 to DE89 3704 0044 0532 0130 00, routing number 021000021, call 212  555-1234, mail a.b@example.com key -----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY----- end"
	want := maskAll(t, m, p, Text, in)
	for _, v := range []string{"4111", "DE89", "021000021", "555-1234", "a.b@", "abc"} {
		if strings.Contains(want, v) {
			t.Fatalf("unmasked %q in %q", v, want)
		}
	}
	for n := 1; n < len(in); n++ {
		got, err := maskChunks(t, m, p, Text, in, n)
		if err != nil || got != want {
			t.Fatalf("chunks of %d: %v\n got %q\nwant %q", n, err, got, want)
		}
	}
}

func TestCSV(t *testing.T) {
	pci, _ := Builtin("pci")
	p := mustProfile(t, pci)
	m := NewMasker()
	in := "name,ssn,account_number,note\r\nann,123456789,987654321,\"card 4111 1111 1111 1111, \"\"x\"\"\"\r\nbob,078-05-1121,1,plain\n"
	want := "name,ssn,account_number,note\r\nann,[REDACTED:SSN],[REDACTED:ACCOUNT],\"card [REDACTED:CARD], \"\"x\"\"\"\r\nbob,[REDACTED:SSN],[REDACTED:ACCOUNT],plain\n"
	if got := maskAll(t, m, p, CSV, in); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	for n := 1; n < len(in); n++ {
		got, err := maskChunks(t, m, p, CSV, in, n)
		if err != nil || got != want {
			t.Fatalf("chunks of %d: %v\n got %q", n, err, got)
		}
	}
	// A header name longer than any field's names its column by number:
	// cut, it could end inside a value.
	in = strings.Repeat("x", 240) + " 4111111111111111,b\r\n4111 1111 1111 1111,1\r\n"
	maskAll(t, m, p, CSV, in)
	if ptrs := m.Report(p).Pointers; strings.Join(ptrs, " ") != "/0/0 /1/0" {
		t.Fatalf("pointers %.80q", ptrs)
	}
}

// A state that claims to be inside a container with none open, or at the
// top level inside one, is corrupt: an error, not a panic.
func TestCorruptJSONStateIsAnError(t *testing.T) {
	c, _ := Builtin("all")
	p := mustProfile(t, c)
	for _, st := range [][]byte{
		{stateVersion, byte(JSON), 0, jCommaOrEnd, 0},
		{stateVersion, byte(JSON), 0, jKey, 0},
		{stateVersion, byte(NDJSON), 0, jTop, 1, 0, 0, 0},
	} {
		if _, err := NewMasker().Mask(p, Format(st[1]), st, []byte(`,"a":1}`), false); err != ErrState {
			t.Errorf("state %v: %v, want ErrState", st, err)
		}
	}
}
