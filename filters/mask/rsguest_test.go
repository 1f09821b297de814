package mask

import (
	"bytes"
	_ "embed" // the Go module, the reference
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goModule is the Go engine's module (filters/mask/guest), which the
// built-in Rust module is held to.
//
//go:embed guest/custos-mask.wasm
var goModule []byte

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
			// the token's space anywhere in a block, and a key's dashes
			pre := strings.Repeat("x ", 12)[:r.IntN(24)]
			if r.IntN(4) == 0 {
				nl := []string{"\n", " "}[r.IntN(2)]
				return pre + "-----BEGIN PRIVATE KEY-----" + nl + "MIIB" + strings.Repeat("A", 64) + nl + "-----END PRIVATE KEY-----"
			}
			return pre + []string{"Bearer", "bearer", "BEARER", "Bearr", "Beaer"}[r.IntN(5)] + " eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
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
	keys := []string{"card", "iban", "order_id", "ref", "acct_no", "ACCT-NO", "account number", "dob", "secret", "note", "phone", "access_token", "clientSecret", "email", "x", "a/b~c", "~1/~0", "a_key_of_exactly16", "a_key_of_sixteen", "", "customer/contact~email/primary"}
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
				case 3: // a number with a sign, a fraction or an exponent
					enc = fmt.Sprintf("%s%s.%d%s%+d", []string{"", "-"}[r.IntN(2)], g.digits(1+r.IntN(18)), r.IntN(100), []string{"e", "E"}[r.IntN(2)], r.IntN(40)-20)
				case 1:
					enc = "[" + enc + "," + fmt.Sprintf("%q", values()) + "]"
				case 2:
					enc = `{"dob":"1970-01-01","secret":` + enc + `,"n":null,"t":true}`
				}
				key := fmt.Sprintf("%q", keys[r.IntN(len(keys))])
				if r.IntN(10) == 0 { // keyed by a value
					key = strings.Replace(fmt.Sprintf("%q", values()), "1", `\u0031`, r.IntN(2))
				}
				fmt.Fprintf(&s, "%s:%s", key, enc)
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
//
// The Details are the module's own: pointers as it reported them, before
// the host masks their tokens.
func maskChunks(t *testing.T, e Engine, p Profile, ct string, body []byte, r *rand.Rand) ([]byte, Details, error) {
	st, err := e.Open(p, Body{ContentType: ct})
	if err != nil {
		return nil, Details{}, err
	}
	s := st.(*stream)
	defer s.Close()
	var out []byte
	for len(body) > 0 {
		n := 1 + r.IntN(min(len(body), []int{7, 64, 1024, 70000}[r.IntN(4)]))
		o, err := s.Mask(body[:n], n == len(body))
		if err != nil {
			return out, s.moduleDetails(), err
		}
		out = append(out, o...)
		body = body[n:]
	}
	return out, s.moduleDetails(), nil
}

// rsHMACKey keys both modules' hmac operator.
var rsHMACKey = []byte("0123456789abcdef0123456789abcdef")

// goAndBuiltin are the Go module and the built-in one, configured alike.
// CUSTOS_COMPARE_MODULE names another module to hold to the Go one.
func goAndBuiltin(t testing.TB) (goe, rse *WASM) {
	t.Helper()
	mod := BuiltinModule
	if p := os.Getenv("CUSTOS_COMPARE_MODULE"); p != "" {
		var err error
		if mod, err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	goe, err := NewWASM(t.Context(), Options{Module: goModule, Profiles: rsProfiles, HMACKey: rsHMACKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { goe.Close(t.Context()) })
	rse, err = NewWASM(t.Context(), Options{Module: mod, Profiles: rsProfiles, HMACKey: rsHMACKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rse.Close(t.Context()) })
	return goe, rse
}

// TestBuiltinModuleMatchesGoEngine: the built-in module (Rust,
// filters/mask/rsguest) gives the Go module's output, report and errors
// for every body, format, profile and chunking.
func TestBuiltinModuleMatchesGoEngine(t *testing.T) {
	goe, rse := goAndBuiltin(t)
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
					t.Fatalf("%s %s round %d: Go module error %v, built-in module error %v", f, prof, round, werr, gerr)
				}
				if !bytes.Equal(got, want) {
					// where, not what: the bytes may be unmasked values
					t.Fatalf("%s %s round %d: outputs differ from byte %d (%d and %d bytes)", f, prof, round, firstDiff(want, got), len(want), len(got))
				}
				if !reflect.DeepEqual(gd, wd) {
					t.Fatalf("%s %s round %d: reports differ\nGo:   %+v\nbuilt-in: %+v", f, prof, round, wd, gd)
				}
			}
		}
	}
	if masked == 0 || failed == 0 || failed == cases {
		t.Fatalf("%d bodies, %d values masked, %d failed: the bodies do not test the modules", cases, masked, failed)
	}
	t.Logf("%d bodies masked alike (%d values masked, %d bodies failed alike)", cases, masked, failed)
}

// A pointer of 128 bytes or more has a longer length field in the report
// (the built-in module widens it after writing the pointer): long keys and
// deep paths are reported as by the Go module, whole up to the 1,024 bytes
// a stream keeps.
func TestBuiltinModuleReportsLongPointers(t *testing.T) {
	goe, rse := goAndBuiltin(t)
	for _, n := range []int{100, 130, 300, 20000} {
		key := strings.Repeat("k", n)
		body := []byte(`{"a":{"` + key + `":[{"card":"4111 1111 1111 1111"}],"b":"4111111111111111"}}`)
		want, wd, werr := maskChunks(t, goe, NewProfile("all"), "application/json", body, rand.New(rand.NewPCG(uint64(n), 1)))
		got, gd, gerr := maskChunks(t, rse, NewProfile("all"), "application/json", body, rand.New(rand.NewPCG(uint64(n), 1)))
		if werr != nil || gerr != nil || !bytes.Equal(got, want) {
			t.Fatalf("key of %d bytes: errors %v, %v; outputs equal %v", n, werr, gerr, bytes.Equal(got, want))
		}
		ptrs := []string{"/a/" + key + "/0/card", "/a/b"}
		if len(ptrs[0]) > maxPointerLen {
			// read whole from the report (the next record lines up), then
			// cut between tokens by the stream
			ptrs[0] = "/a" + truncatedToken
		}
		if !reflect.DeepEqual(gd.Pointers, ptrs) || !reflect.DeepEqual(wd.Pointers, ptrs) {
			t.Fatalf("key of %d bytes: pointers %.80q (Go module %.80q)", n, gd.Pointers, wd.Pointers)
		}
	}
}

// FuzzBuiltinModuleMatchesGoEngine: any body, in any format and profile,
// cut anywhere, is masked by the built-in module as by the Go one.
func FuzzBuiltinModuleMatchesGoEngine(f *testing.F) {
	g := gen{r: rand.New(rand.NewPCG(5, 6))}
	for i, format := range []string{"json", "ndjson", "csv", "text"} {
		f.Add(rsDoc(g, format, 3), uint8(i), uint8(i), uint64(i))
	}
	f.Add([]byte(`{"a":"4111 1111 1111 1111","b":"\u0034111111111111111"}`), uint8(0), uint8(0), uint64(7))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----"), uint8(3), uint8(2), uint64(3))
	f.Add([]byte("id,card\r\n1,\"4111-1111-1111-1111\"\r\n"), uint8(2), uint8(1), uint64(1))
	// a run of more groups than one window holds, values astride it
	f.Add([]byte(strings.Repeat("0 ", 20)+"4334 1234 1234 1234 1 +1 415 555 2671 "+strings.Repeat("1-", 40)+"123-45-6789"), uint8(3), uint8(0), uint64(2))
	f.Add([]byte(`{"n":"`+strings.Repeat("9 ", 30)+`4111 1111 1111 1111"}`), uint8(0), uint8(1), uint64(4))
	f.Add([]byte(`{"4111111111111111":{"DE89370400440532013000":["a@b.io"]},"\u0034111 1111 1111 1111":1}`), uint8(0), uint8(0), uint64(5))
	f.Add([]byte("call 212  555-1234, 4111  1111 1111 1111 or 212 555  1234"), uint8(3), uint8(0), uint64(6))
	f.Add([]byte(strings.Repeat("x", 250)+" 4111111111111111,b\r\n4111111111111111,1\r\n"), uint8(2), uint8(1), uint64(7))
	goe, rse := goAndBuiltin(f)
	formats := []string{"json", "ndjson", "csv", "text"}
	profiles := []string{"all", "pci", "pii", "secrets", "rules"}
	f.Fuzz(func(t *testing.T, body []byte, format, prof uint8, seed uint64) {
		ct := rsContentTypes[formats[int(format)%len(formats)]]
		p := NewProfile(profiles[int(prof)%len(profiles)])
		want, wd, werr := maskChunks(t, goe, p, ct, body, rand.New(rand.NewPCG(seed, 1)))
		got, gd, gerr := maskChunks(t, rse, p, ct, body, rand.New(rand.NewPCG(seed, 1)))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("Go module error %v, built-in module error %v", werr, gerr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("outputs differ from byte %d (%d and %d bytes)", firstDiff(want, got), len(want), len(got))
		}
		if !reflect.DeepEqual(gd, wd) {
			t.Fatalf("reports differ\nGo:       %+v\nbuilt-in: %+v", wd, gd)
		}
	})
}

// TestBuiltinModuleIsReproducible proves the committed module is what
// filters/mask/rsguest builds to under Debian's rustc 1.63 (build.sh).
func TestBuiltinModuleIsReproducible(t *testing.T) {
	needRustc(t)
	out := filepath.Join(t.TempDir(), "custos-mask-rs.wasm")
	cmd := exec.Command("sh", "filters/mask/rsguest/build.sh", out)
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	built, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, BuiltinModule) {
		t.Fatalf("filters/mask/rsguest/custos-mask-rs.wasm (%d bytes) is not what the source builds to (%d bytes): run make wasm and commit it", len(BuiltinModule), len(built))
	}
}

// debianRustc is the compiler build.sh uses.
const debianRustc = "/usr/bin/rustc"

// needRustc skips the test (fails it under CI=true) unless Debian's rustc
// 1.63 is installed.
func needRustc(t *testing.T) {
	t.Helper()
	v, err := exec.Command(debianRustc, "--version").Output()
	if err != nil || !strings.HasPrefix(string(v), "rustc 1.63.0") {
		msg := fmt.Sprintf("%s is not Debian's rustc 1.63.0 (%q, %v): apt-get install rustc libstd-rust-dev-wasm32", debianRustc, strings.TrimSpace(string(v)), err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// TestRsguestUnitTests runs the Rust port's own tests, natively: SHA-256
// and HMAC against their published vectors, the profile reader, and
// may_match against detect.
func TestRsguestUnitTests(t *testing.T) {
	needRustc(t)
	bin := filepath.Join(t.TempDir(), "rsguest-test")
	build := exec.Command(debianRustc, "--edition", "2021", "--test", "-O", "-o", bin, "filters/mask/rsguest/lib.rs")
	build.Dir = repoRoot(t)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("rustc --test: %v\n%s", err, b)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("the Rust tests failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "may_match_never_hides_a_value ... ok") {
		t.Fatalf("the may_match test did not run:\n%s", out)
	}
}

// firstDiff is the offset of the first byte where a and b differ.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
