// Package demo is the demo upstream that `custos dev` starts: a small HTTP
// JSON API over realistic customer records carrying the kinds of values Custos
// masks (card numbers, IBANs, SSNs, account and routing numbers).
//
// Every record is SYNTHETIC, generated for demos and tests; none describes a
// real person. Names come from fixed lists of common first and last names,
// email addresses use only the reserved example.com domain, and telephone
// numbers use the fictional 555-0100 to 555-0199 range. SSNs, card numbers,
// IBANs and routing numbers are random but pass the usual validity checks, so
// that detectors and maskers see well-formed values.
package demo

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Customer is one synthetic customer record.
type Customer struct {
	ID            int    `json:"id"`
	Name          string `json:"name"`
	Email         string `json:"email"`
	Phone         string `json:"phone"`          // E.164, e.g. +14155550123
	SSN           string `json:"ssn"`            // NNN-NN-NNNN, valid by SSA rules
	CardNumber    string `json:"card_number"`    // 16 digits, Luhn-valid, Visa or Mastercard
	IBAN          string `json:"iban"`           // GB, DE, FR or NL, valid mod-97 check digits
	AccountNumber string `json:"account_number"` // 10–12 digits
	RoutingNumber string `json:"routing_number"` // 9-digit ABA number with a valid checksum
	Balance       string `json:"balance"`        // decimal string, e.g. "1234.56"
	Segment       string `json:"segment"`        // retail | private | business
}

// Segments a customer can belong to.
const (
	segmentRetail   = "retail"
	segmentPrivate  = "private"
	segmentBusiness = "business"
)

// pcgStream is the second PCG word used for every generator in this package
// ("custos-d" in ASCII); the first word is the seed.
const pcgStream = 0x637573746f732d64

// Customers returns n synthetic customers with IDs 1 to n. The result depends
// only on n and seed (math/rand/v2 with a PCG source), and the first k records
// of Customers(n, seed) equal Customers(k, seed) for k <= n. Emails, SSNs, card
// numbers, IBANs and account numbers are unique within the result. A
// non-positive n yields an empty, non-nil slice.
func Customers(n int, seed int64) []Customer {
	if n <= 0 {
		return []Customer{}
	}
	g := newGenerator(uint64(seed), nil)
	out := make([]Customer, 0, n)
	for id := 1; id <= n; id++ {
		out = append(out, g.customer(id))
	}
	return out
}

// generator draws synthetic values from one PCG stream.
type generator struct {
	r *rand.Rand
	// seen holds values already issued, keyed by kind ("ssn:123-45-6789"),
	// so that generated identifiers do not repeat.
	seen map[string]bool
}

func newGenerator(seed uint64, seen map[string]bool) *generator {
	if seen == nil {
		seen = make(map[string]bool)
	}
	return &generator{r: rand.New(rand.NewPCG(seed, pcgStream)), seen: seen}
}

// hashSeed derives a generator seed from the given parts.
func hashSeed(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// customer generates a complete record. The order of draws is fixed, which
// keeps Customers deterministic.
func (g *generator) customer(id int) Customer {
	first := firstNames[g.r.IntN(len(firstNames))]
	last := lastNames[g.r.IntN(len(lastNames))]
	segment := g.segment()
	return Customer{
		ID:            id,
		Name:          first + " " + last,
		Email:         g.email(first, last),
		Phone:         g.phone(),
		SSN:           g.unique("ssn", g.ssn),
		CardNumber:    g.unique("card", g.cardNumber),
		IBAN:          g.unique("iban", g.iban),
		AccountNumber: g.unique("account", g.accountNumber),
		RoutingNumber: g.routingNumber(),
		Balance:       g.balance(segment),
		Segment:       segment,
	}
}

// fill generates every empty field of c except Name and Email, and records
// the identifiers of c as issued. New customers start in the retail segment
// with a zero balance.
func (g *generator) fill(c *Customer) {
	if c.Phone == "" {
		c.Phone = g.phone()
	}
	if c.SSN == "" {
		c.SSN = g.unique("ssn", g.ssn)
	}
	if c.CardNumber == "" {
		c.CardNumber = g.unique("card", g.cardNumber)
	}
	if c.IBAN == "" {
		c.IBAN = g.unique("iban", g.iban)
	}
	if c.AccountNumber == "" {
		c.AccountNumber = g.unique("account", g.accountNumber)
	}
	if c.RoutingNumber == "" {
		c.RoutingNumber = g.routingNumber()
	}
	if c.Segment == "" {
		c.Segment = segmentRetail
	}
	if c.Balance == "" {
		c.Balance = "0.00"
	}
	g.remember(*c)
}

// remember records the identifiers of c as issued.
func (g *generator) remember(c Customer) {
	g.seen["email:"+strings.ToLower(c.Email)] = true
	g.seen["ssn:"+c.SSN] = true
	g.seen["card:"+c.CardNumber] = true
	g.seen["iban:"+c.IBAN] = true
	g.seen["account:"+c.AccountNumber] = true
}

// unique draws values from gen until one of the given kind has not been
// issued yet. The value spaces are vast compared with any demo data set, so
// this loops only on a rare collision.
func (g *generator) unique(kind string, gen func() string) string {
	for {
		v := gen()
		if key := kind + ":" + v; !g.seen[key] {
			g.seen[key] = true
			return v
		}
	}
}

func (g *generator) segment() string {
	switch n := g.r.IntN(10); {
	case n < 7:
		return segmentRetail
	case n < 9:
		return segmentBusiness
	default:
		return segmentPrivate
	}
}

// email returns first.last@example.com, adding a number to the local part
// (first.last2@example.com) when the address was already issued.
func (g *generator) email(first, last string) string {
	local := emailPart(first) + "." + emailPart(last)
	for i := 1; ; i++ {
		addr := local + "@example.com"
		if i > 1 {
			addr = local + strconv.Itoa(i) + "@example.com"
		}
		if key := "email:" + addr; !g.seen[key] {
			g.seen[key] = true
			return addr
		}
	}
}

// emailPart lowercases a name, folds common accented letters to ASCII and
// drops everything that is not a letter or digit ("O'Brien" -> "obrien").
func emailPart(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if s, ok := asciiFold[r]; ok {
			b.WriteString(s)
			continue
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

var asciiFold = map[rune]string{
	'á': "a", 'à': "a", 'â': "a", 'ä': "a", 'å': "a", 'ã': "a",
	'é': "e", 'è': "e", 'ê': "e", 'ë': "e",
	'í': "i", 'ì': "i", 'î': "i", 'ï': "i",
	'ó': "o", 'ò': "o", 'ô': "o", 'ö': "o", 'ø': "o", 'õ': "o",
	'ú': "u", 'ù': "u", 'û': "u", 'ü': "u",
	'ñ': "n", 'ç': "c", 'ß': "ss",
}

// phone returns a North American number in E.164 form whose line number lies
// in the 555-0100 to 555-0199 range reserved for fiction.
func (g *generator) phone() string {
	area := areaCodes[g.r.IntN(len(areaCodes))]
	return fmt.Sprintf("+1%s55501%02d", area, g.r.IntN(100))
}

// ssn returns an NNN-NN-NNNN number valid by SSA rules: area 001-899 except
// 666, group 01-99, serial 0001-9999.
func (g *generator) ssn() string {
	area := 1 + g.r.IntN(898) // 1..898
	if area >= 666 {
		area++ // skip 666; 667..899
	}
	group := 1 + g.r.IntN(99)
	serial := 1 + g.r.IntN(9999)
	return fmt.Sprintf("%03d-%02d-%04d", area, group, serial)
}

// cardNumber returns a 16-digit Luhn-valid number with a Visa (4) or
// Mastercard (51-55) prefix.
func (g *generator) cardNumber() string {
	prefix := "4"
	if g.r.IntN(5) < 2 {
		prefix = strconv.Itoa(51 + g.r.IntN(5))
	}
	payload := prefix + g.digits(15-len(prefix))
	return payload + string(luhnCheckDigit(payload))
}

// iban returns an IBAN for GB, DE, FR or NL with the correct length and
// check digits.
func (g *generator) iban() string {
	var country, bban string
	switch g.r.IntN(4) {
	case 0: // GB: bank code, sort code, account number (22 characters)
		country = "GB"
		bban = gbBanks[g.r.IntN(len(gbBanks))] + g.digits(6) + g.digits(8)
	case 1: // DE: Bankleitzahl, account number (22 characters)
		country = "DE"
		bban = strconv.Itoa(1+g.r.IntN(8)) + g.digits(7) + g.digits(10)
	case 2: // FR: bank, branch, account number, RIB key (27 characters)
		country = "FR"
		bank := frBanks[g.r.IntN(len(frBanks))]
		branch := g.digits(5)
		account := g.digits(11)
		bban = bank + branch + account + ribKey(bank, branch, account)
	default: // NL: bank code, account number (18 characters)
		country = "NL"
		bban = nlBanks[g.r.IntN(len(nlBanks))] + g.dutchAccount()
	}
	return country + ibanCheckDigits(country, bban) + bban
}

// dutchAccount returns a 10-digit account number passing the Dutch
// "elfproef" (weights 10..1, sum divisible by 11).
func (g *generator) dutchAccount() string {
	for {
		d := g.digits(9)
		sum := 0
		for i := 0; i < 9; i++ {
			sum += int(d[i]-'0') * (10 - i)
		}
		if last := (11 - sum%11) % 11; last < 10 {
			return d + strconv.Itoa(last)
		}
	}
}

// ribKey computes the two-digit French RIB key for all-digit components.
func ribKey(bank, branch, account string) string {
	b, _ := strconv.ParseInt(bank, 10, 64)
	s, _ := strconv.ParseInt(branch, 10, 64)
	a, _ := strconv.ParseInt(account, 10, 64)
	return fmt.Sprintf("%02d", 97-(89*b+15*s+3*a)%97)
}

// accountNumber returns 10 to 12 digits without a leading zero.
func (g *generator) accountNumber() string {
	n := 10 + g.r.IntN(3)
	return strconv.Itoa(1+g.r.IntN(9)) + g.digits(n-1)
}

// routingNumber returns a 9-digit ABA routing number with a Federal Reserve
// (01-12) or thrift (21-32) prefix and a valid check digit.
func (g *generator) routingNumber() string {
	prefix := 1 + g.r.IntN(12)
	if g.r.IntN(4) == 0 {
		prefix += 20
	}
	payload := fmt.Sprintf("%02d", prefix) + g.digits(6)
	return payload + string(abaCheckDigit(payload))
}

// balance returns a decimal amount typical of the segment.
func (g *generator) balance(segment string) string {
	var cents int64
	switch segment {
	case segmentPrivate:
		cents = 5_000_000 + g.r.Int64N(500_000_000) // 50,000.00 - 5,050,000.00
	case segmentBusiness:
		cents = 500_000 + g.r.Int64N(200_000_000) // 5,000.00 - 2,005,000.00
	default:
		cents = g.r.Int64N(2_500_000) // 0.00 - 25,000.00
	}
	return formatCents(cents)
}

func formatCents(cents int64) string {
	return fmt.Sprintf("%d.%02d", cents/100, cents%100)
}

// digits returns n random decimal digits.
func (g *generator) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}

// account is one bank account of a customer, as served by
// GET /{id}/accounts.
type account struct {
	AccountNumber string `json:"account_number"`
	RoutingNumber string `json:"routing_number"`
	IBAN          string `json:"iban"`
	Balance       string `json:"balance"`
	Currency      string `json:"currency"`
}

// accountsFor returns one to three accounts of c, determined by c alone. The
// first is the customer's own account number, routing number, IBAN and
// balance; any others are generated.
func accountsFor(c Customer) []account {
	g := newGenerator(hashSeed("accounts", strconv.Itoa(c.ID), c.SSN, c.AccountNumber, c.IBAN), nil)
	g.remember(c)
	n := 1 + g.r.IntN(3)
	accts := make([]account, 0, n)
	accts = append(accts, account{
		AccountNumber: c.AccountNumber,
		RoutingNumber: c.RoutingNumber,
		IBAN:          c.IBAN,
		Balance:       c.Balance,
		Currency:      currencyFor(c.IBAN),
	})
	for len(accts) < n {
		iban := g.unique("iban", g.iban)
		accts = append(accts, account{
			AccountNumber: g.unique("account", g.accountNumber),
			RoutingNumber: g.routingNumber(),
			IBAN:          iban,
			Balance:       g.balance(c.Segment),
			Currency:      currencyFor(iban),
		})
	}
	return accts
}

// currencyFor returns the currency of an account held in the IBAN's country.
func currencyFor(iban string) string {
	switch {
	case strings.HasPrefix(iban, "GB"):
		return "GBP"
	case strings.HasPrefix(iban, "DE"), strings.HasPrefix(iban, "FR"), strings.HasPrefix(iban, "NL"):
		return "EUR"
	default:
		return "USD"
	}
}

// Synthetic name lists: common given names and surnames from several
// countries. Combinations are random and describe no one.
var firstNames = []string{
	"James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
	"David", "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica",
	"Thomas", "Sarah", "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa",
	"Anthony", "Emily", "Mark", "Sandra", "Olivia", "Emma", "Liam", "Noah",
	"Sophia", "Ava", "Lucas", "Mia", "Ethan", "Amelia", "Priya", "Arjun",
	"Wei", "Mei", "Hiroshi", "Yuki", "Omar", "Fatima", "Mateo", "Sofía",
	"José", "Lucía", "Chloé", "Léa", "Lukas", "Hannah", "Jonas", "Anna",
	"Sven", "Ingrid", "Zoë", "Aisha", "Kwame", "Amara", "Diego", "Camille",
}

var lastNames = []string{
	"Smith", "Johnson", "Williams", "Brown", "Jones", "García", "Miller", "Davis",
	"Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Taylor",
	"Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris",
	"Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen",
	"King", "Wright", "Scott", "Nguyen", "Patel", "Kim", "Chen", "Wang",
	"Singh", "Tanaka", "Sato", "Müller", "Schmidt", "Fischer", "Dubois", "Moreau",
	"Lefèvre", "de Vries", "van Dijk", "Jansen", "Bakker", "O'Brien", "Murphy", "Kelly",
	"Okafor", "Mensah", "Haddad", "Kowalski", "Novak", "Rossi", "Sørensen", "Núñez",
}

// areaCodes are US area codes used with the fictional 555-01xx line numbers.
var areaCodes = []string{
	"212", "213", "206", "303", "305", "312", "404", "415", "503", "512",
	"602", "615", "617", "646", "702", "718", "720", "808", "919", "973",
}

var (
	gbBanks = []string{"NWBK", "BARC", "LOYD", "HBUK", "MIDL", "WEST"}
	frBanks = []string{"30004", "30003", "30002", "20041", "10278", "11315"}
	nlBanks = []string{"ABNA", "INGB", "RABO", "SNSB", "TRIO", "KNAB"}
)
