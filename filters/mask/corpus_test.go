package mask

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "regenerate testdata/corpus.jsonl")

// corpusCase is one labelled document: it holds one value, which must be
// masked as Entity (Want) or must stay (a near miss or an ordinary number,
// Entity naming what it resembles).
type corpusCase struct {
	Kind   string `json:"kind"`   // what the value is: valid, near miss, ordinary
	Entity string `json:"entity"` // the entity it is, or resembles
	Want   bool   `json:"want"`   // masked
	Format string `json:"format"` // application/json, text/plain, text/csv
	Value  string `json:"value"`
	Body   string `json:"body"`
}

const corpusFile = "testdata/corpus.jsonl"

// corpusProfile is what the corpus is masked with: every built-in entity,
// order ids known not to be cards.
var corpusProfile = Spec{Config: engineConfig(`{"entities":["aba","account","azure_key","bearer","card","email","iban","phone","private_key","sas","ssn"],"ignore_fields":{"order_id":["card"]}}`)}

func TestCorpusPrecisionAndRecall(t *testing.T) {
	if *updateCorpus {
		writeCorpus(t)
	}
	f, err := os.Open(corpusFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []corpusCase
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c corpusCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	}
	native, err := NewNative(NativeOptions{Profiles: map[string]Spec{"corpus": corpusProfile}})
	if err != nil {
		t.Fatal(err)
	}
	w := corpusEngine(t)
	type tally struct{ tp, fn, fp, tn int }
	per := map[string]*tally{}
	get := func(e string) *tally {
		if per[e] == nil {
			per[e] = &tally{}
		}
		return per[e]
	}
	p := NewProfile("corpus")
	for i, c := range cases {
		out, s, err := maskBody(t, native, p, Body{ContentType: c.Format}, []byte(c.Body), 0)
		if err != nil {
			t.Fatalf("case %d (%s %s): %v", i, c.Kind, c.Entity, err)
		}
		wout, _, err := maskBody(t, w, p, Body{ContentType: c.Format}, []byte(c.Body), 0)
		if err != nil || !bytes.Equal(out, wout) {
			t.Fatalf("case %d: the WASM engine and the native one differ (%v)", i, err)
		}
		if c.Format == "application/json" && !json.Valid(out) {
			t.Errorf("case %d: masked JSON is not valid", i)
		}
		rep := s.Report()
		if c.Want {
			if rep[c.Entity] > 0 && !bytes.Contains(out, []byte(c.Value)) {
				get(c.Entity).tp++
			} else {
				get(c.Entity).fn++
				t.Errorf("case %d: a valid %s (%s, %s) was not masked", i, c.Entity, c.Kind, c.Format)
			}
			continue
		}
		if len(rep) == 0 {
			get(c.Entity).tn++
			continue
		}
		for e := range rep {
			get(e).fp++
			t.Logf("case %d: a %s %s (%s) was masked as %s", i, c.Kind, c.Entity, c.Format, e)
		}
	}
	var names []string
	for e := range per {
		names = append(names, e)
	}
	sort.Strings(names)
	t.Logf("%-12s %6s %6s %6s %6s %9s %7s", "entity", "tp", "fn", "fp", "tn", "precision", "recall")
	for _, e := range names {
		x := per[e]
		prec, rec := 1.0, 1.0
		if x.tp+x.fp > 0 {
			prec = float64(x.tp) / float64(x.tp+x.fp)
		}
		if x.tp+x.fn > 0 {
			rec = float64(x.tp) / float64(x.tp+x.fn)
		}
		t.Logf("%-12s %6d %6d %6d %6d %8.2f%% %6.2f%%", e, x.tp, x.fn, x.fp, x.tn, 100*prec, 100*rec)
		if rec < 1 {
			t.Errorf("%s: recall %.2f%%, want 100%%", e, 100*rec)
		}
		if prec < 0.99 {
			t.Errorf("%s: precision %.2f%%, want at least 99%%", e, 100*prec)
		}
	}
}

var (
	corpusW   *WASM
	corpusErr error
)

func corpusEngine(t testing.TB) *WASM {
	t.Helper()
	if corpusW == nil && corpusErr == nil {
		corpusW, corpusErr = NewWASM(t.Context(), Options{Profiles: map[string]Spec{"corpus": corpusProfile}})
	}
	if corpusErr != nil {
		t.Fatal(corpusErr)
	}
	return corpusW
}

// --- the generator ---

type gen struct{ r *rand.Rand }

func (g gen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}

func luhnDigit(s string) byte {
	sum := 0
	double := true
	for i := len(s) - 1; i >= 0; i-- {
		v := int(s[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return byte('0' + (10-sum%10)%10)
}

func (g gen) card() string {
	prefixes := []struct {
		p string
		n int
	}{{"4", 16}, {"4", 13}, {"4", 19}, {"51", 16}, {"55", 16}, {"2221", 16}, {"34", 15}, {"37", 15}, {"6011", 16}, {"65", 16}, {"3528", 16}, {"62", 17}}
	x := prefixes[g.r.IntN(len(prefixes))]
	s := x.p + g.digits(x.n-len(x.p)-1)
	return s + string(luhnDigit(s))
}

func group(s string, sizes []int, sep string) string {
	var parts []string
	for _, n := range sizes {
		if n >= len(s) {
			break
		}
		parts = append(parts, s[:n])
		s = s[n:]
	}
	parts = append(parts, s)
	return strings.Join(parts, sep)
}

func (g gen) formatCard(s string) string {
	switch g.r.IntN(3) {
	case 0:
		return s
	case 1:
		if len(s) == 15 {
			return group(s, []int{4, 6}, " ")
		}
		return group(s, []int{4, 4, 4, 4}, " ")
	}
	if len(s) == 15 {
		return group(s, []int{4, 6}, "-")
	}
	return group(s, []int{4, 4, 4, 4}, "-")
}

var ibanCountries = map[string]int{"DE": 22, "GB": 22, "FR": 27, "ES": 24, "NL": 18, "IT": 27, "CH": 21, "BE": 16, "AT": 20, "PL": 28, "SE": 24, "IE": 22, "PT": 25, "NO": 15, "DK": 18}

func ibanCheck(cc, bban string) string {
	s := bban + cc + "00"
	r := 0
	for _, c := range s {
		if c >= 'A' && c <= 'Z' {
			r = (r*100 + int(c-'A'+10)) % 97
		} else {
			r = (r*10 + int(c-'0')) % 97
		}
	}
	return fmt.Sprintf("%02d", 98-r)
}

func (g gen) iban() string {
	ccs := make([]string, 0, len(ibanCountries))
	for cc := range ibanCountries {
		ccs = append(ccs, cc)
	}
	sort.Strings(ccs)
	cc := ccs[g.r.IntN(len(ccs))]
	n := ibanCountries[cc] - 4
	bban := ""
	if cc == "GB" || cc == "NL" || cc == "IE" {
		bank := ""
		for i := 0; i < 4; i++ {
			bank += string(rune('A' + g.r.IntN(26)))
		}
		bban = bank + g.digits(n-4)
	} else {
		bban = g.digits(n)
	}
	return cc + ibanCheck(cc, bban) + bban
}

func (g gen) aba() string {
	prefixes := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 80}
	for {
		s := fmt.Sprintf("%02d", prefixes[g.r.IntN(len(prefixes))]) + g.digits(6)
		d := func(i int) int { return int(s[i] - '0') }
		sum := 3*(d(0)+d(3)+d(6)) + 7*(d(1)+d(4)+d(7)) + d(2) + d(5)
		c := (10 - sum%10) % 10
		if sum+c != 0 {
			return s + strconv.Itoa(c)
		}
	}
}

func (g gen) ssn() string {
	for {
		area := 1 + g.r.IntN(899)
		if area == 666 {
			continue
		}
		return fmt.Sprintf("%03d-%02d-%04d", area, 1+g.r.IntN(99), 1+g.r.IntN(9999))
	}
}

func (g gen) phone() string {
	a, x, n := 2+g.r.IntN(8), 2+g.r.IntN(8), g.digits(4)
	ac := strconv.Itoa(a) + g.digits(2)
	ex := strconv.Itoa(x) + g.digits(2)
	switch g.r.IntN(4) {
	case 0:
		return "(" + ac + ") " + ex + "-" + n
	case 1:
		return ac + "-" + ex + "-" + n
	case 2:
		return "+1 " + ac + " " + ex + " " + n
	}
	return "+44 20 " + g.digits(4) + " " + g.digits(4)
}

func (g gen) email() string {
	names := []string{"ann", "bob.smith", "c.jones+tag", "dev_ops", "x1"}
	hosts := []string{"example.com", "mail.example.co.uk", "corp.example.org"}
	return names[g.r.IntN(len(names))] + strconv.Itoa(g.r.IntN(100)) + "@" + hosts[g.r.IntN(len(hosts))]
}

// bumpDigit changes one digit of s (a near miss: one digit off).
func (g gen) bumpDigit(s string) string {
	b := []byte(s)
	for {
		i := g.r.IntN(len(b))
		if b[i] >= '0' && b[i] <= '9' {
			b[i] = '0' + (b[i]-'0'+1+byte(g.r.IntN(8)))%10
			return string(b)
		}
	}
}

func validLuhn(s string) bool { return luhnDigit(s[:len(s)-1]) == s[len(s)-1] }

var fillers = []string{"the customer asked about the last statement", "see the attached note", "updated by the nightly job", "no further action"}

// place puts a value in a document of one of the formats, with a field
// name fitting the entity.
func (g gen) place(field, value string, quoteJSON bool, sentence string) []corpusCase {
	filler := fillers[g.r.IntN(len(fillers))]
	jv := strconv.Quote(value)
	if !quoteJSON {
		jv = value
	}
	return []corpusCase{
		{Format: "application/json", Body: fmt.Sprintf(`{"id":%d,"%s":%s,"note":%q,"amount":%d.%02d}`, g.r.IntN(100000), field, jv, filler, g.r.IntN(10000), g.r.IntN(100))},
		{Format: "text/plain", Body: fmt.Sprintf("%s. %s %s, %s.", filler, sentence, value, fillers[g.r.IntN(len(fillers))])},
		{Format: "text/csv", Body: fmt.Sprintf("id,%s,amount\r\n%d,%s,%d.%02d\r\n", field, g.r.IntN(100000), value, g.r.IntN(1000), g.r.IntN(100))},
	}
}

func writeCorpus(t *testing.T) {
	g := gen{r: rand.New(rand.NewPCG(15, 2026))}
	var out []corpusCase
	add := func(kind, entity string, want bool, value string, cs []corpusCase) {
		for _, c := range cs {
			c.Kind, c.Entity, c.Want, c.Value = kind, entity, want, value
			out = append(out, c)
		}
	}
	for i := 0; i < 120; i++ {
		c := g.card()
		fc := g.formatCard(c)
		add("valid", "card", true, fc, g.place("card_number", fc, true, "paid with card"))
		if i%4 == 0 {
			add("valid as a JSON number", "card", true, c, []corpusCase{{Format: "application/json", Body: `{"pan":` + c + `}`}})
		}
		bad := g.bumpDigit(c)
		add("one digit off", "card", false, bad, g.place("card_number", bad, true, "paid with card"))
		short := c[:11]
		short += string(luhnDigit(short))
		add("wrong length (12)", "card", false, short, g.place("ref", short, true, "reference"))
		long := c + g.digits(20-len(c)-1)
		long += string(luhnDigit(long))
		add("wrong length (20)", "card", false, long, g.place("ref", long, true, "reference"))
		add("order id", "card", false, c, []corpusCase{{Format: "application/json", Body: `{"order_id":"` + c + `","status":"shipped"}`}})

		iban := g.iban()
		add("valid", "iban", true, iban, g.place("iban", iban, true, "transfer to"))
		print := group(iban, []int{4, 4, 4, 4, 4, 4, 4}, " ")
		add("valid, print form", "iban", true, print, g.place("iban", print, true, "transfer to"))
		badIBAN := iban[:2] + fmt.Sprintf("%02d", (int(iban[2]-'0')*10+int(iban[3]-'0')+1)%97) + iban[4:]
		add("wrong checksum", "iban", false, badIBAN, g.place("iban", badIBAN, true, "transfer to"))

		aba := g.aba()
		add("valid", "aba", true, aba, g.place("routing_number", aba, true, "routing number"))
		badABA := aba[:8] + string('0'+(aba[8]-'0'+1)%10)
		add("wrong checksum", "aba", false, badABA, g.place("routing_number", badABA, true, "routing number"))

		ssn := g.ssn()
		add("valid", "ssn", true, ssn, g.place("ssn", ssn, true, "SSN"))
		plain := strings.ReplaceAll(ssn, "-", "")
		add("valid, unformatted in an ssn field", "ssn", true, plain, []corpusCase{{Format: "application/json", Body: `{"ssn":"` + plain + `"}`}, {Format: "text/csv", Body: "name,ssn\nann," + plain + "\n"}})
		for _, bad := range []string{"000" + ssn[3:], "666" + ssn[3:], "9" + ssn[1:], ssn[:4] + "00" + ssn[6:], ssn[:7] + "0000"} {
			add("invalid area, group or serial", "ssn", false, bad, g.place("ssn", bad, true, "SSN"))
		}

		ph := g.phone()
		add("valid", "phone", true, ph, g.place("phone", ph, true, "call"))
		em := g.email()
		add("valid", "email", true, em, g.place("email", em, true, "write to"))

		// ordinary values that must stay
		ts := "17" + g.digits(11)
		add("timestamp (ms)", "card", false, ts, g.place("created", ts, false, "created at"))
		date := fmt.Sprintf("2026-%02d-%02dT%02d:%02d:%02dZ", 1+g.r.IntN(12), 1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60))
		add("date", "phone", false, date, g.place("created", date, true, "created at"))
		amount := fmt.Sprintf("%d.%02d", g.r.IntN(10000000), g.r.IntN(100))
		add("amount", "card", false, amount, g.place("amount", amount, false, "total"))
		nine := g.digits(9)
		add("9-digit id", "aba", false, nine, g.place("id", nine, true, "ticket"))
		ten := strconv.Itoa(1+g.r.IntN(9)) + g.digits(9)
		add("10-digit id", "phone", false, ten, g.place("invoice", ten, true, "invoice"))
		var id string
		for id = g.digits(16); validLuhn(id); id = g.digits(16) {
		}
		add("16-digit id, not Luhn", "card", false, id, g.place("tracking", id, true, "tracking"))
	}
	for i := 0; i < 20; i++ {
		acct := g.digits(8 + g.r.IntN(6))
		add("account by field name", "account", true, acct, []corpusCase{{Format: "application/json", Body: `{"Account_Number":"` + acct + `"}`}, {Format: "text/csv", Body: "name,account_no\nann," + acct + "\n"}})
		key := ""
		for k := 0; k < 86; k++ {
			key += string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[g.r.IntN(64)])
		}
		key += "=="
		add("valid", "azure_key", true, key, g.place("connection", "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey="+key+";EndpointSuffix=core.windows.net", true, "connection string"))
		sig := g.digits(10) + "abcXYZ%2B%3D"
		add("valid", "sas", true, sig, g.place("url", "https://acct.blob.core.windows.net/c/b?sv=2024-11-04&se=2026-01-01&sp=r&sig="+sig, true, "link"))
		tok := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ" + g.digits(12) + "In0.c2ln" + g.digits(20)
		add("valid", "bearer", true, tok, g.place("authorization", "Bearer "+tok, true, "header"))
		pem := "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + g.digits(60) + "\n" + g.digits(64) + "\n-----END RSA PRIVATE KEY-----"
		add("valid", "private_key", true, g.digits(60), []corpusCase{{Format: "application/json", Body: `{"pem":` + strconv.Quote(pem) + `}`}, {Format: "text/plain", Body: "key:\n" + pem + "\nend"}})
	}
	if err := os.MkdirAll(filepath.Dir(corpusFile), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, c := range out {
		j, _ := json.Marshal(c)
		b.Write(j)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(corpusFile, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d cases to %s", len(out), corpusFile)
}
