package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestLuhnValidAcceptsKnownGoodAndRejectsBadNumbers(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"4111111111111111", true},  // Visa test number
		{"4012888888881881", true},  // Visa test number
		{"5555555555554444", true},  // Mastercard test number
		{"5105105105105100", true},  // Mastercard test number
		{"378282246310005", true},   // Amex test number, 15 digits
		{"79927398713", true},       // textbook example
		{"4111111111111112", false}, // wrong check digit
		{"79927398710", false},
		{"4111 1111 1111 1111", false}, // separators are not digits
		{"4111-1111-1111-1111", false},
		{"41111111111111a1", false},
		{"", false},
		{"0", false}, // too short
	}
	for _, tt := range tests {
		if got := LuhnValid(tt.in); got != tt.want {
			t.Errorf("LuhnValid(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestIBANValidAcceptsKnownGoodAndRejectsBadIBANs(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"GB82WEST12345698765432", true},
		{"GB29NWBK60161331926819", true},
		{"DE89370400440532013000", true},
		{"FR1420041010050500013M02606", true},
		{"NL91ABNA0417164300", true},
		{"BE68539007547034", true},
		{"CH9300762011623852957", true},
		{"NO9386011117947", true},              // shortest registered length, 15
		{"GB82WEST12345698765431", false},      // wrong check digits for the BBAN
		{"GB83WEST12345698765432", false},      // altered check digits
		{"GB82WEST1234569876543", false},       // one character short for GB
		{"GB82WEST123456987654321", false},     // one character long for GB
		{"NL91ABNA041716430", false},           // short for NL
		{"DE89370400440532013001", false},      // altered account digit
		{"gb82west12345698765432", false},      // lowercase is not electronic format
		{"GB82 WEST 1234 5698 7654 32", false}, // paper format with spaces
		{"GB82WEST1234569876543!", false},
		{"1282WEST12345698765432", false}, // country code not letters
		{"GBXXWEST12345698765432", false}, // check digits not digits
		{"", false},
		{"GB82", false},
	}
	for _, tt := range tests {
		if got := IBANValid(tt.in); got != tt.want {
			t.Errorf("IBANValid(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestIBANValidRejectsCheckDigitsOutside02To98(t *testing.T) {
	// GB00/GB01/GB99 variants where mod 97 still equals 1 must be rejected.
	bban := "WEST12345698765432"
	base := ibanCheckDigits("GB", bban)
	if base != "82" {
		t.Fatalf("ibanCheckDigits(GB, %s) = %s, want 82", bban, base)
	}
	// Find a BBAN whose check digits are 02..98 with an alias in 00, 01 or 99.
	for i := 0; i < 100000; i++ {
		bban := fmt.Sprintf("WEST%014d", i)
		cd := ibanCheckDigits("GB", bban)
		var alias string
		switch cd {
		case "97":
			alias = "00"
		case "98":
			alias = "01"
		case "02":
			alias = "99"
		default:
			continue
		}
		if !IBANValid("GB" + cd + bban) {
			t.Fatalf("IBANValid(GB%s%s) = false, want true", cd, bban)
		}
		if IBANValid("GB" + alias + bban) {
			t.Fatalf("IBANValid(GB%s%s) = true, want false (check digits %s are reserved)", alias, bban, alias)
		}
		return
	}
	t.Fatal("no BBAN with aliasable check digits found")
}

func TestABAValidAcceptsKnownGoodAndRejectsBadRoutingNumbers(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"011000015", true}, // Federal Reserve Bank of Boston
		{"021000021", true},
		{"026009593", true},
		{"121000358", true},
		{"111000025", true},
		{"011000016", false}, // wrong check digit
		{"021000012", false}, // transposed digits
		{"01100001", false},  // 8 digits
		{"0110000150", false},
		{"01100001a", false},
		{"011-000-015", false},
		{"000000000", false}, // passes the checksum but is not a routing number
		{"", false},
	}
	for _, tt := range tests {
		if got := ABAValid(tt.in); got != tt.want {
			t.Errorf("ABAValid(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestSSNValidEnforcesSSARules(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"123-45-6789", true},
		{"001-01-0001", true},
		{"899-99-9999", true},
		{"000-45-6789", false},
		{"666-45-6789", false},
		{"900-45-6789", false},
		{"987-65-4321", false},
		{"123-00-6789", false},
		{"123-45-0000", false},
		{"123456789", false},
		{"123-45-678", false},
		{"12a-45-6789", false},
	}
	for _, tt := range tests {
		if got := ssnValid(tt.in); got != tt.want {
			t.Errorf("ssnValid(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

var (
	e164Fictional  = regexp.MustCompile(`^\+1[2-9][0-9]{2}55501[0-9]{2}$`)
	emailExample   = regexp.MustCompile(`^[a-z0-9]+\.[a-z0-9]+[0-9]*@example\.com$`)
	balanceDecimal = regexp.MustCompile(`^(0|[1-9][0-9]*)\.[0-9]{2}$`)
	ibanLenByCC    = map[string]int{"GB": 22, "DE": 22, "FR": 27, "NL": 18}
)

// checkCustomer reports every way c breaks the documented field formats.
func checkCustomer(t *testing.T, c Customer) {
	t.Helper()
	if c.Name == "" || !strings.Contains(c.Name, " ") {
		t.Errorf("customer %d: name %q is not first and last", c.ID, c.Name)
	}
	if !emailExample.MatchString(c.Email) {
		t.Errorf("customer %d: email %q is not first.last@example.com", c.ID, c.Email)
	}
	if !e164Fictional.MatchString(c.Phone) {
		t.Errorf("customer %d: phone %q is not an E.164 555-01xx number", c.ID, c.Phone)
	}
	if !ssnValid(c.SSN) {
		t.Errorf("customer %d: ssn %q breaks SSA rules", c.ID, c.SSN)
	}
	if len(c.CardNumber) != 16 || !LuhnValid(c.CardNumber) {
		t.Errorf("customer %d: card %q is not 16 Luhn-valid digits", c.ID, c.CardNumber)
	}
	if !(strings.HasPrefix(c.CardNumber, "4") || c.CardNumber >= "51" && c.CardNumber < "56") {
		t.Errorf("customer %d: card %q has neither a Visa nor a Mastercard prefix", c.ID, c.CardNumber)
	}
	if !IBANValid(c.IBAN) {
		t.Errorf("customer %d: iban %q is invalid", c.ID, c.IBAN)
	} else if want, ok := ibanLenByCC[c.IBAN[:2]]; !ok || len(c.IBAN) != want {
		t.Errorf("customer %d: iban %q is not GB, DE, FR or NL of the right length", c.ID, c.IBAN)
	}
	if n := len(c.AccountNumber); n < 10 || n > 12 || !allDigits(c.AccountNumber) {
		t.Errorf("customer %d: account number %q is not 10-12 digits", c.ID, c.AccountNumber)
	}
	if !ABAValid(c.RoutingNumber) {
		t.Errorf("customer %d: routing number %q is invalid", c.ID, c.RoutingNumber)
	}
	if !balanceDecimal.MatchString(c.Balance) {
		t.Errorf("customer %d: balance %q is not a decimal string", c.ID, c.Balance)
	}
	switch c.Segment {
	case "retail", "private", "business":
	default:
		t.Errorf("customer %d: segment %q is unknown", c.ID, c.Segment)
	}
}

func TestCustomersAllThousandRecordsPassEveryValidator(t *testing.T) {
	cs := Customers(1000, 42)
	if len(cs) != 1000 {
		t.Fatalf("len = %d, want 1000", len(cs))
	}
	segments := map[string]int{}
	countries := map[string]int{}
	networks := map[byte]int{}
	for i, c := range cs {
		if c.ID != i+1 {
			t.Errorf("record %d has ID %d, want %d", i, c.ID, i+1)
		}
		checkCustomer(t, c)
		segments[c.Segment]++
		countries[c.IBAN[:2]]++
		networks[c.CardNumber[0]]++
	}
	for _, s := range []string{"retail", "private", "business"} {
		if segments[s] == 0 {
			t.Errorf("no %s customers among 1000", s)
		}
	}
	for cc := range ibanLenByCC {
		if countries[cc] == 0 {
			t.Errorf("no %s IBANs among 1000", cc)
		}
	}
	if networks['4'] == 0 || networks['5'] == 0 {
		t.Errorf("card networks not mixed: %v", networks)
	}
}

func TestCustomersIdentifiersAreUnique(t *testing.T) {
	cs := Customers(1000, 7)
	fields := map[string]func(Customer) string{
		"email":          func(c Customer) string { return c.Email },
		"ssn":            func(c Customer) string { return c.SSN },
		"card_number":    func(c Customer) string { return c.CardNumber },
		"iban":           func(c Customer) string { return c.IBAN },
		"account_number": func(c Customer) string { return c.AccountNumber },
	}
	for name, get := range fields {
		seen := map[string]int{}
		for _, c := range cs {
			if prev, dup := seen[get(c)]; dup {
				t.Errorf("%s %q shared by customers %d and %d", name, get(c), prev, c.ID)
			}
			seen[get(c)] = c.ID
		}
	}
}

func TestCustomersDeterministicForSeed(t *testing.T) {
	a, b := Customers(200, 99), Customers(200, 99)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("Customers(200, 99) differs between calls")
	}
	if reflect.DeepEqual(a, Customers(200, 100)) {
		t.Fatal("Customers(200, 99) equals Customers(200, 100)")
	}
	if prefix := Customers(50, 99); !reflect.DeepEqual(prefix, a[:50]) {
		t.Fatal("Customers(50, 99) is not a prefix of Customers(200, 99)")
	}
}

func TestCustomersNonPositiveCountIsEmpty(t *testing.T) {
	for _, n := range []int{0, -1} {
		if cs := Customers(n, 1); cs == nil || len(cs) != 0 {
			t.Errorf("Customers(%d, 1) = %#v, want empty non-nil", n, cs)
		}
	}
}

func TestEmailPartFoldsAccentsAndDropsPunctuation(t *testing.T) {
	tests := map[string]string{"O'Brien": "obrien", "Núñez": "nunez", "Sørensen": "sorensen", "de Vries": "devries", "Zoë": "zoe", "Müller": "muller"}
	for in, want := range tests {
		if got := emailPart(in); got != want {
			t.Errorf("emailPart(%q) = %q, want %q", in, got, want)
		}
	}
}

// --- HTTP ---

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	return srv
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// decodeJSON checks the status, content type and indentation and decodes the
// body into v.
func decodeJSON(t *testing.T, r response, wantStatus int, v any) {
	t.Helper()
	if r.status != wantStatus {
		t.Fatalf("status = %d, want %d; body %s", r.status, wantStatus, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if !bytes.HasPrefix(r.body, []byte("{\n  \"")) {
		t.Errorf("body is not indented by two spaces: %.60q", r.body)
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

func wantError(t *testing.T, r response, status int, code string) errorResponse {
	t.Helper()
	var e errorResponse
	decodeJSON(t, r, status, &e)
	if e.Error != code || e.Message == "" {
		t.Errorf("error body = %+v, want error %q and a message", e, code)
	}
	return e
}

func TestListDefaultsToTwentyOfFifty(t *testing.T) {
	srv := newServer(t)
	var got listResponse
	decodeJSON(t, do(t, "GET", srv.URL+"/", nil), http.StatusOK, &got)
	if got.Total != 50 || len(got.Customers) != 20 {
		t.Fatalf("total %d, %d customers; want 50 and 20", got.Total, len(got.Customers))
	}
	if want := Customers(50, 1)[:20]; !reflect.DeepEqual(got.Customers, want) {
		t.Error("listed customers differ from Customers(50, 1)[:20]")
	}
}

func TestListHonoursLimitAndOffset(t *testing.T) {
	srv := newServer(t)
	all := Customers(50, 1)
	tests := []struct {
		query   string
		from, n int
	}{
		{"?limit=5", 0, 5},
		{"?limit=5&offset=10", 10, 5},
		{"?offset=45", 45, 5},
		{"?limit=100", 0, 50},
		{"?limit=1&offset=49", 49, 1},
		{"?offset=50", 50, 0},
		{"?offset=1000", 50, 0},
	}
	for _, tt := range tests {
		var got listResponse
		decodeJSON(t, do(t, "GET", srv.URL+"/"+tt.query, nil), http.StatusOK, &got)
		if got.Total != 50 {
			t.Errorf("%s: total = %d, want 50", tt.query, got.Total)
		}
		if got.Customers == nil || !reflect.DeepEqual(got.Customers, all[tt.from:tt.from+tt.n]) {
			t.Errorf("%s: got %d customers, want all[%d:%d]", tt.query, len(got.Customers), tt.from, tt.from+tt.n)
		}
	}
}

func TestListRejectsBadLimitAndOffsetWith400(t *testing.T) {
	srv := newServer(t)
	for _, q := range []string{
		"?limit=0", "?limit=101", "?limit=-1", "?limit=abc", "?limit=", "?limit=1.5", "?limit=+5",
		"?offset=-1", "?offset=x", "?offset=", "?offset=99999999999999999999999", "?limit=%zz",
	} {
		t.Run(q, func(t *testing.T) {
			wantError(t, do(t, "GET", srv.URL+"/"+q, nil), http.StatusBadRequest, "bad_request")
		})
	}
}

func TestGetCustomerByID(t *testing.T) {
	srv := newServer(t)
	var got Customer
	decodeJSON(t, do(t, "GET", srv.URL+"/7", nil), http.StatusOK, &got)
	if want := Customers(50, 1)[6]; got != want {
		t.Errorf("GET /7 = %+v, want %+v", got, want)
	}
}

func TestGetUnknownCustomerIs404(t *testing.T) {
	srv := newServer(t)
	e := wantError(t, do(t, "GET", srv.URL+"/999", nil), http.StatusNotFound, "not_found")
	if e.Message != "no customer 999" {
		t.Errorf("message = %q, want %q", e.Message, "no customer 999")
	}
	wantError(t, do(t, "GET", srv.URL+"/0", nil), http.StatusNotFound, "not_found")
}

func TestGetNonNumericIDIs400(t *testing.T) {
	srv := newServer(t)
	for _, id := range []string{"abc", "-1", "+1", "1e3", "99999999999999999999999"} {
		wantError(t, do(t, "GET", srv.URL+"/"+id, nil), http.StatusBadRequest, "bad_request")
		wantError(t, do(t, "GET", srv.URL+"/"+id+"/accounts", nil), http.StatusBadRequest, "bad_request")
	}
}

func TestAccountsAreDeterministicValidAndLeadWithCustomersAccount(t *testing.T) {
	srv := newServer(t)
	cs := Customers(50, 1)
	sizes := map[int]bool{}
	for _, c := range cs {
		url := fmt.Sprintf("%s/%d/accounts", srv.URL, c.ID)
		var got, again accountsResponse
		decodeJSON(t, do(t, "GET", url, nil), http.StatusOK, &got)
		decodeJSON(t, do(t, "GET", url, nil), http.StatusOK, &again)
		if !reflect.DeepEqual(got, again) {
			t.Errorf("%s differs between requests", url)
		}
		if got.CustomerID != c.ID || len(got.Accounts) < 1 || len(got.Accounts) > 3 {
			t.Fatalf("%s: customer_id %d with %d accounts", url, got.CustomerID, len(got.Accounts))
		}
		sizes[len(got.Accounts)] = true
		first := got.Accounts[0]
		if first.AccountNumber != c.AccountNumber || first.RoutingNumber != c.RoutingNumber || first.IBAN != c.IBAN || first.Balance != c.Balance {
			t.Errorf("%s: first account %+v does not match customer %+v", url, first, c)
		}
		for _, a := range got.Accounts {
			if n := len(a.AccountNumber); n < 10 || n > 12 || !allDigits(a.AccountNumber) {
				t.Errorf("%s: account number %q", url, a.AccountNumber)
			}
			if !ABAValid(a.RoutingNumber) || !IBANValid(a.IBAN) || !balanceDecimal.MatchString(a.Balance) {
				t.Errorf("%s: invalid account %+v", url, a)
			}
			if want := map[string]string{"GB": "GBP", "DE": "EUR", "FR": "EUR", "NL": "EUR"}[a.IBAN[:2]]; a.Currency != want {
				t.Errorf("%s: currency %q for IBAN %s, want %q", url, a.Currency, a.IBAN, want)
			}
		}
	}
	if len(sizes) != 3 {
		t.Errorf("account counts over 50 customers = %v, want 1, 2 and 3 all present", sizes)
	}
	wantError(t, do(t, "GET", srv.URL+"/999/accounts", nil), http.StatusNotFound, "not_found")
}

func TestHealthzReturnsPlainOK(t *testing.T) {
	srv := newServer(t)
	r := do(t, "GET", srv.URL+"/healthz", nil)
	if r.status != http.StatusOK || string(r.body) != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 ok", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
}

func TestPostCreatesCustomerWithGeneratedValidFields(t *testing.T) {
	srv := newServer(t)
	body := `{"name":"  Ada Example ","email":"ada.example@example.com","id":7}`
	var got Customer
	decodeJSON(t, do(t, "POST", srv.URL+"/", strings.NewReader(body)), http.StatusCreated, &got)
	if got.ID != 51 || got.Name != "Ada Example" || got.Email != "ada.example@example.com" {
		t.Fatalf("created %+v, want id 51, trimmed name and given email", got)
	}
	checkCustomer(t, got)
	if got.Segment != "retail" || got.Balance != "0.00" {
		t.Errorf("new customer segment %q balance %q, want retail 0.00", got.Segment, got.Balance)
	}

	var fetched Customer
	decodeJSON(t, do(t, "GET", srv.URL+"/51", nil), http.StatusOK, &fetched)
	if fetched != got {
		t.Errorf("GET /51 = %+v, want %+v", fetched, got)
	}
	var list listResponse
	decodeJSON(t, do(t, "GET", srv.URL+"/?offset=50", nil), http.StatusOK, &list)
	if list.Total != 51 || len(list.Customers) != 1 || list.Customers[0] != got {
		t.Errorf("after POST, list offset 50 = %+v", list)
	}
	var accts accountsResponse
	decodeJSON(t, do(t, "GET", srv.URL+"/51/accounts", nil), http.StatusOK, &accts)
	if accts.CustomerID != 51 || accts.Accounts[0].IBAN != got.IBAN {
		t.Errorf("accounts of the new customer = %+v", accts)
	}

	var second Customer
	decodeJSON(t, do(t, "POST", srv.URL+"/", strings.NewReader(`{"name":"Bo Example","email":"bo@example.org"}`)), http.StatusCreated, &second)
	if second.ID != 52 {
		t.Errorf("second created ID = %d, want 52", second.ID)
	}
}

func TestPostKeepsSuppliedValidFields(t *testing.T) {
	srv := newServer(t)
	in := Customer{
		Name: "Cy Example", Email: "cy.example@example.com", Phone: "+14155550123",
		SSN: "123-45-6789", CardNumber: "4111111111111111", IBAN: "GB82WEST12345698765432",
		AccountNumber: "1234567890", RoutingNumber: "011000015", Balance: "1234.56", Segment: "private",
	}
	b, _ := json.Marshal(in)
	var got Customer
	decodeJSON(t, do(t, "POST", srv.URL+"/", bytes.NewReader(b)), http.StatusCreated, &got)
	in.ID = 51
	if got != in {
		t.Errorf("created %+v, want %+v", got, in)
	}
}

func TestPostRejectsInvalidBodiesWith400(t *testing.T) {
	srv := newServer(t)
	tests := map[string]string{
		"invalid JSON":       `{"name":`,
		"not an object":      `["x"]`,
		"null":               `null`,
		"empty body":         ``,
		"missing name":       `{"email":"a.b@example.com"}`,
		"blank name":         `{"name":"  ","email":"a.b@example.com"}`,
		"missing email":      `{"name":"A B"}`,
		"bad email":          `{"name":"A B","email":"not-an-email"}`,
		"email display name": `{"name":"A B","email":"A B <a.b@example.com>"}`,
		"unknown field":      `{"name":"A B","email":"a.b@example.com","nickname":"ab"}`,
		"trailing data":      `{"name":"A B","email":"a.b@example.com"} {}`,
		"wrong type":         `{"name":"A B","email":"a.b@example.com","id":"x"}`,
		"bad card":           `{"name":"A B","email":"a.b@example.com","card_number":"4111111111111112"}`,
		"bad iban":           `{"name":"A B","email":"a.b@example.com","iban":"GB82WEST12345698765431"}`,
		"bad ssn":            `{"name":"A B","email":"a.b@example.com","ssn":"666-12-3456"}`,
		"bad routing":        `{"name":"A B","email":"a.b@example.com","routing_number":"011000016"}`,
		"bad account":        `{"name":"A B","email":"a.b@example.com","account_number":"12345"}`,
		"bad phone":          `{"name":"A B","email":"a.b@example.com","phone":"415-555-0123"}`,
		"bad balance":        `{"name":"A B","email":"a.b@example.com","balance":"12.5"}`,
		"bad segment":        `{"name":"A B","email":"a.b@example.com","segment":"vip"}`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			wantError(t, do(t, "POST", srv.URL+"/", strings.NewReader(body)), http.StatusBadRequest, "bad_request")
		})
	}
	var list listResponse
	decodeJSON(t, do(t, "GET", srv.URL+"/?limit=1", nil), http.StatusOK, &list)
	if list.Total != 50 {
		t.Errorf("total after rejected POSTs = %d, want 50", list.Total)
	}
}

func TestPostBodyLimitIsOneMiB(t *testing.T) {
	srv := newServer(t)
	obj := `{"name":"Di Example","email":"di.example@example.com"}`

	atLimit := obj + strings.Repeat(" ", maxBodyBytes-len(obj))
	var c Customer
	decodeJSON(t, do(t, "POST", srv.URL+"/", strings.NewReader(atLimit)), http.StatusCreated, &c)

	overLimit := atLimit + " "
	wantError(t, do(t, "POST", srv.URL+"/", strings.NewReader(overLimit)), http.StatusRequestEntityTooLarge, "request_too_large")

	// Without a Content-Length (chunked transfer encoding).
	chunked := io.MultiReader(strings.NewReader(overLimit))
	wantError(t, do(t, "POST", srv.URL+"/", chunked), http.StatusRequestEntityTooLarge, "request_too_large")
}

func TestConcurrentPostsGetDistinctIDs(t *testing.T) {
	srv := newServer(t)
	const n = 20
	ids := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"name":"Ed Example","email":"ed%d@example.com"}`, i)
			res, err := http.Post(srv.URL+"/", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			var c Customer
			if err := json.NewDecoder(res.Body).Decode(&c); err != nil || res.StatusCode != http.StatusCreated {
				t.Errorf("POST: status %d, err %v", res.StatusCode, err)
				return
			}
			ids <- c.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[int]bool{}
	for id := range ids {
		if seen[id] || id < 51 || id > 50+n {
			t.Errorf("unexpected or duplicate ID %d", id)
		}
		seen[id] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct IDs, want %d", len(seen), n)
	}
}

func TestOtherMethodsAre405WithAllow(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		method, path, allow string
	}{
		{"DELETE", "/", "GET, HEAD, POST"},
		{"PUT", "/", "GET, HEAD, POST"},
		{"POST", "/1", "GET, HEAD"},
		{"DELETE", "/1", "GET, HEAD"},
		{"PATCH", "/1/accounts", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
	}
	for _, tt := range tests {
		r := do(t, tt.method, srv.URL+tt.path, nil)
		wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
		if got := r.header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

func TestUnknownPathIsJSON404(t *testing.T) {
	srv := newServer(t)
	for _, p := range []string{"/1/accounts/2", "/1/cards", "/a/b/c"} {
		wantError(t, do(t, "GET", srv.URL+p, nil), http.StatusNotFound, "not_found")
	}
}

func TestUncleanPathRedirectIsJSON(t *testing.T) {
	h := Handler()
	req := httptest.NewRequest("GET", "/x/../7", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusTemporaryRedirect || rec.Header().Get("Location") != "/7" {
		t.Fatalf("GET /x/../7 = %d Location %q, want 307 to /7", rec.Code, rec.Header().Get("Location"))
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

func TestNewHandlerServesGivenCustomersByID(t *testing.T) {
	cs := []Customer{{ID: 9, Name: "Nine"}, {ID: 3, Name: "Three"}, {ID: 3, Name: "Dup"}}
	srv := httptest.NewServer(NewHandler(cs))
	defer srv.Close()
	var list listResponse
	decodeJSON(t, do(t, "GET", srv.URL+"/", nil), http.StatusOK, &list)
	if list.Total != 2 || list.Customers[0].Name != "Three" || list.Customers[1].Name != "Nine" {
		t.Errorf("list = %+v, want Three then Nine", list)
	}
	var c Customer
	decodeJSON(t, do(t, "POST", srv.URL+"/", strings.NewReader(`{"name":"Ten","email":"ten@example.com"}`)), http.StatusCreated, &c)
	if c.ID != 10 {
		t.Errorf("created ID = %d, want 10", c.ID)
	}
	if cs[0].Name != "Nine" {
		t.Error("NewHandler modified the caller's slice")
	}
}
