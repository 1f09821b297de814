//go:build rsguest

package mask

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// rsProfiles are the profiles both modules are compared under: the
// built-in ones and one with every kind of rule and operator.
var rsProfiles = map[string]Spec{
	"rules": {Config: engineConfig(`{
		"entities": ["card","iban","aba","ssn","account","email","phone","bearer","azure_key","sas","private_key"],
		"operators": {"*": "redact", "card": "last4", "account": "hmac", "email": "hmac", "ssn": "null", "employee": "hmac"},
		"account_fields": ["acct-no", "Account Number", "iban_ref"],
		"ignore_fields": {"order_id": ["card"], "ref": ["phone", "ssn"]},
		"fields": [{"path": "/customers/*/dob", "entity": "dob", "operator": "null"},
		           {"path": "/*/secret", "entity": "secret"},
		           {"path": "/customers/0/note", "operator": "last4"}],
		"patterns": [{"name": "employee", "regex": "(?i)emp-[0-9]{6}", "operator": "hmac"},
		             {"name": "ticket", "regex": "\\bT[A-Z]{2}\\d{3,5}\\b"},
		             {"name": "ext", "regex": "x\\d*", "operator": "last4"}]}`)},
}

// rsDoc is a random body in format f: records of generated values, near
// misses and noise, escapes and nesting.
func rsDoc(g gen, f string, n int) []byte {
	r := g.r
	values := func() string {
		switch r.IntN(16) {
		case 0:
			return g.formatCard(g.card())
		case 1:
			return g.iban()
		case 2:
			return g.ssn()
		case 3:
			return g.aba()
		case 4:
			return g.phone()
		case 5:
			return g.email()
		case 6:
			return g.bumpDigit(g.card())
		case 7:
			return "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
		case 8:
			return "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=" + strings.Repeat("Qk", 43) + "==;"
		case 9:
			return "https://a.blob.core.windows.net/c?sv=2025-01-01&sig=" + strings.Repeat("a%2B", 10) + "&se=1"
		case 10:
			return "-----BEGIN PRIVATE KEY-----\nMIIB" + strings.Repeat("A", 64) + "\n-----END PRIVATE KEY-----"
		case 11:
			return fmt.Sprintf("EMP-%06d and TAB%04d x%d", r.IntN(1000000), r.IntN(10000), r.IntN(100))
		case 12:
			return fmt.Sprintf("order %d at 2026-03-%02dT10:20:30Z, amount %d.%02d", r.Int64N(1e16), 1+r.IntN(28), r.IntN(1e5), r.IntN(100))
		case 13:
			return "caf\u00e9 \u4e2d\u6587 \"quoted\" back\\slash tab\t"
		case 14:
			return g.digits(8 + r.IntN(12))
		}
		return "called about the last statement, no action needed"
	}
	keys := []string{"card", "iban", "order_id", "ref", "acct_no", "ACCT-NO", "account number", "dob", "secret", "note", "phone", "access_token", "clientSecret", "email", "x"}
	var b bytes.Buffer
	switch f {
	case "text":
		for range n {
			b.WriteString(values())
			b.WriteString([]string{" ", "\n", ", ", "\r\n", "; "}[r.IntN(5)])
		}
	case "csv":
		b.WriteString("id,card,order_id,acct_no,note\r\n")
		for i := range n {
			fmt.Fprintf(&b, "%d,%s,\"%s\",%s,\"%s\"\r\n", i, values(), values(), g.digits(10), strings.ReplaceAll(values(), `"`, `""`))
		}
	case "ndjson", "json":
		rec := func(i int) string {
			var s strings.Builder
			s.WriteString("{")
			for k := range 1 + r.IntN(5) {
				if k > 0 {
					s.WriteString(",")
				}
				v := values()
				enc := fmt.Sprintf("%q", v)
				if r.IntN(6) == 0 { // a digit written as an escape
					enc = strings.Replace(enc, "4", `\u0034`, 1)
				}
				switch r.IntN(8) {
				case 0:
					enc = g.digits(1 + r.IntN(18))
				case 1:
					enc = "[" + enc + "," + fmt.Sprintf("%q", values()) + "]"
				case 2:
					enc = `{"dob":"1970-01-01","secret":` + enc + `,"n":null,"t":true}`
				}
				fmt.Fprintf(&s, "%q:%s", keys[r.IntN(len(keys))], enc)
			}
			s.WriteString("}")
			return s.String()
		}
		if f == "ndjson" {
			for i := range n {
				b.WriteString(rec(i))
				b.WriteString("\n")
			}
		} else {
			b.WriteString(`{"customers":[`)
			for i := range n {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(rec(i))
			}
			b.WriteString(`], "total": 12345678901234}`)
		}
	}
	return b.Bytes()
}

var rsContentTypes = map[string]string{"text": "text/plain", "csv": "text/csv", "json": "application/json", "ndjson": "application/x-ndjson"}

// maskChunks masks body in chunks of random sizes.
func maskChunks(t *testing.T, e Engine, p Profile, ct string, body []byte, r *rand.Rand) ([]byte, Details, error) {
	s, err := e.Open(p, Body{ContentType: ct})
	if err != nil {
		return nil, Details{}, err
	}
	defer s.Close()
	var out []byte
	for len(body) > 0 {
		n := 1 + r.IntN(min(len(body), []int{7, 64, 1024, 70000}[r.IntN(4)]))
		o, err := s.Mask(body[:n], n == len(body))
		if err != nil {
			return out, s.Details(), err
		}
		out = append(out, o...)
		body = body[n:]
	}
	return out, s.Details(), nil
}

// TestRustModuleMatchesGoEngine: the Rust module (filters/mask/rsguest)
// gives the built-in Go module's output, report and errors for every
// body, format, profile and chunking.
func TestRustModuleMatchesGoEngine(t *testing.T) {
	path := filepath.Join("rsguest", "custos-mask-rs.wasm")
	if p := os.Getenv("CUSTOS_COMPARE_MODULE"); p != "" { // another module to hold to the Go one
		path = p
	}
	mod, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	goe, err := NewWASM(t.Context(), Options{Profiles: rsProfiles, HMACKey: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	rse, err := NewWASM(t.Context(), Options{Module: mod, Profiles: rsProfiles, HMACKey: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	g := gen{r: rand.New(rand.NewPCG(3, 4))}
	cases, masked, failed := 0, 0, 0
	for round := range 60 {
		for _, f := range []string{"json", "ndjson", "csv", "text"} {
			body := rsDoc(g, f, 1+g.r.IntN(40))
			if round%10 == 9 && len(body) > 10 { // broken bodies fail alike
				body = body[:g.r.IntN(len(body))]
			}
			for _, prof := range []string{"all", "pci", "pii", "secrets", "rules"} {
				seed := g.r.Uint64()
				want, wd, werr := maskChunks(t, goe, NewProfile(prof), rsContentTypes[f], body, rand.New(rand.NewPCG(seed, 1)))
				got, gd, gerr := maskChunks(t, rse, NewProfile(prof), rsContentTypes[f], body, rand.New(rand.NewPCG(seed, 1)))
				cases++
				if werr != nil {
					failed++
				}
				for _, ops := range wd.Counts {
					for _, n := range ops {
						masked += n
					}
				}
				if (werr == nil) != (gerr == nil) {
					t.Fatalf("%s %s round %d: Go module error %v, Rust module error %v", f, prof, round, werr, gerr)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s %s round %d: outputs differ\nGo:   %.600q\nRust: %.600q", f, prof, round, want, got)
				}
				if !reflect.DeepEqual(gd, wd) {
					t.Fatalf("%s %s round %d: reports differ\nGo:   %+v\nRust: %+v", f, prof, round, wd, gd)
				}
			}
		}
	}
	if masked == 0 || failed == 0 || failed == cases {
		t.Fatalf("%d bodies, %d values masked, %d failed: the bodies do not test the modules", cases, masked, failed)
	}
	t.Logf("%d bodies masked alike (%d values masked, %d bodies failed alike)", cases, masked, failed)
}
