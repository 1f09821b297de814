package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Entity names the built-in detectors report, as CONTRACT.md and the
// configuration name them.
const (
	Card       = "card"
	IBAN       = "iban"
	ABA        = "aba"
	SSN        = "ssn"
	Email      = "email"
	Phone      = "phone"
	Bearer     = "bearer"
	AzureKey   = "azure_key"
	SAS        = "sas"
	PrivateKey = "private_key"
	Account    = "account"
)

// Operator names.
const (
	Redact = "redact" // [REDACTED:CARD]
	Last4  = "last4"  // every letter and digit but the last four becomes '*'
	HMAC   = "hmac"   // [CARD:16 hex digits of HMAC-SHA256], same value same token
	Null   = "null"   // a JSON value becomes null; elsewhere the value is removed
)

// entity ids: the built-ins first, custom entities (field rules, patterns)
// after them, at most 64 in all (a uint64 holds a set of them).
const (
	entCard uint8 = iota
	entIBAN
	entABA
	entSSN
	entEmail
	entPhone
	entBearer
	entAzureKey
	entSAS
	entPrivateKey
	entAccount
	numBuiltin
	maxEntities = 64
)

var builtinNames = [numBuiltin]string{Card, IBAN, ABA, SSN, Email, Phone, Bearer, AzureKey, SAS, PrivateKey, Account}

const (
	opRedact uint8 = iota
	opLast4
	opHMAC
	opNull
)

var opNames = [...]string{Redact, Last4, HMAC, Null}

// Config is one masking profile as the host hands it to the engine: the
// JSON document the ABI's configure call carries (docs/masking-abi.md).
type Config struct {
	// Entities are the built-in entities to detect.
	Entities []string `json:"entities"`
	// Operators maps an entity (or "*", every entity) to its operator;
	// redact when absent.
	Operators map[string]string `json:"operators,omitempty"`
	// AccountFields are the JSON field (and CSV column) names whose values
	// are account numbers, compared case-insensitively and ignoring '_',
	// '-' and spaces. Empty means the defaults (account_number, acct_no…).
	AccountFields []string `json:"account_fields,omitempty"`
	// IgnoreFields maps a field name (compared as AccountFields) to the
	// entities not detected in its values: {"order_id": ["card"]}.
	IgnoreFields map[string][]string `json:"ignore_fields,omitempty"`
	// Fields are JSON-path rules: every value at the path is masked whole.
	Fields []FieldRule `json:"fields,omitempty"`
	// Patterns are custom regular expressions (Go RE2 syntax).
	Patterns []Pattern `json:"patterns,omitempty"`
	// HMACKey keys the hmac operator (base64 in JSON); required when an
	// operator is hmac.
	HMACKey []byte `json:"hmac_key,omitempty"`
	// Custom is for replacement modules; the built-in engine ignores it.
	Custom json.RawMessage `json:"custom,omitempty"`
}

// FieldRule masks every value at a JSON path.
type FieldRule struct {
	// Path is a JSON pointer whose segments may be "*" (any key or index):
	// "/customers/*/notes".
	Path string `json:"path"`
	// Entity is the name counted in the report (default "field").
	Entity string `json:"entity,omitempty"`
	// Operator is how the value is masked (default redact).
	Operator string `json:"operator,omitempty"`
}

// Pattern is a custom detector.
type Pattern struct {
	// Name is the entity name counted in the report.
	Name string `json:"name"`
	// Regex is matched against text and string values.
	Regex string `json:"regex"`
	// Operator is how a match is masked (default redact).
	Operator string `json:"operator,omitempty"`
	// Prog is Regex compiled, for modules without a regex engine; the
	// host fills it in (CompileProg) and this engine ignores it.
	Prog *Prog `json:"prog,omitempty"`
}

// DefaultAccountFields are the field names whose values are account numbers
// when a profile names none.
var DefaultAccountFields = []string{
	"account_number", "account_no", "acct_number", "acct_no", "acctnum",
	"bank_account", "bank_account_number", "checking_account", "savings_account",
}

// secretFields are field names whose values are secrets, whole: the entity
// they count as.
var secretFields = map[string]uint8{
	"accesstoken": entBearer, "refreshtoken": entBearer, "idtoken": entBearer,
	"bearertoken": entBearer, "clientsecret": entBearer, "apikey": entBearer,
	"authorization": entBearer, "privatekey": entPrivateKey, "accountkey": entAzureKey,
}

// ParseConfig reads a profile's JSON; unknown keys are errors.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("masking config: %w", err)
	}
	return c, nil
}

// Profile is a compiled Config. It is read-only once compiled and may be
// shared by Maskers.
type Profile struct {
	on       uint64 // entities detected in text
	ops      [maxEntities]uint8
	names    []string
	redacted [][]byte // "[REDACTED:CARD]" per entity
	upper    [][]byte // "CARD"
	accounts map[string]bool
	ignore   map[string]uint64
	rules    []pathRule
	patterns []patternRule
	key      []byte
	// hints is on: the context hints (ssn, phone, aba fields) matter.
	fieldHints bool
}

type pathRule struct {
	segs []string
	ent  uint8
}

type patternRule struct {
	re  *regexp.Regexp
	ent uint8
}

// Compile checks c and builds its Profile.
func Compile(c Config) (*Profile, error) {
	p := &Profile{accounts: map[string]bool{}, ignore: map[string]uint64{}}
	p.names = append(p.names, builtinNames[:]...)
	ids := map[string]uint8{}
	for i, n := range builtinNames {
		ids[n] = uint8(i)
	}
	if len(c.Entities) == 0 && len(c.Fields) == 0 && len(c.Patterns) == 0 {
		return nil, errors.New("masking config: no entities, fields or patterns")
	}
	for _, e := range c.Entities {
		id, ok := ids[e]
		if !ok {
			return nil, fmt.Errorf("masking config: unknown entity %q", e)
		}
		p.on |= 1 << id
	}
	custom := func(name string) (uint8, error) {
		if name == "" {
			name = "field"
		}
		if id, ok := ids[name]; ok {
			return id, nil
		}
		if len(p.names) >= maxEntities {
			return 0, errors.New("masking config: more than 64 entities")
		}
		id := uint8(len(p.names))
		p.names = append(p.names, name)
		ids[name] = id
		return id, nil
	}
	opOf := func(name string) (uint8, error) {
		switch name {
		case "", Redact:
			return opRedact, nil
		case Last4:
			return opLast4, nil
		case HMAC:
			return opHMAC, nil
		case Null:
			return opNull, nil
		}
		return 0, fmt.Errorf("masking config: unknown operator %q", name)
	}
	explicit := map[uint8]bool{}
	for _, f := range c.Fields {
		if !strings.HasPrefix(f.Path, "/") {
			return nil, fmt.Errorf("masking config: field path %q is not a JSON pointer", f.Path)
		}
		id, err := custom(f.Entity)
		if err != nil {
			return nil, err
		}
		op, err := opOf(f.Operator)
		if err != nil {
			return nil, err
		}
		if explicit[id] && p.ops[id] != op {
			return nil, fmt.Errorf("masking config: entity %q has two operators", p.names[id])
		}
		explicit[id], p.ops[id] = true, op
		var segs []string
		for _, s := range strings.Split(f.Path[1:], "/") {
			segs = append(segs, strings.NewReplacer("~1", "/", "~0", "~").Replace(s))
		}
		p.rules = append(p.rules, pathRule{segs: segs, ent: id})
	}
	for _, pt := range c.Patterns {
		if pt.Name == "" {
			return nil, errors.New("masking config: a pattern without a name")
		}
		re, err := regexp.Compile(pt.Regex)
		if err != nil {
			return nil, fmt.Errorf("masking config: pattern %q: %w", pt.Name, err)
		}
		id, err := custom(pt.Name)
		if err != nil {
			return nil, err
		}
		op, err := opOf(pt.Operator)
		if err != nil {
			return nil, err
		}
		explicit[id], p.ops[id] = true, op
		p.patterns = append(p.patterns, patternRule{re: re, ent: id})
	}
	def := opRedact
	if o, ok := c.Operators["*"]; ok {
		op, err := opOf(o)
		if err != nil {
			return nil, err
		}
		def = op
	}
	for i := range p.names {
		if !explicit[uint8(i)] {
			p.ops[i] = def
		}
	}
	for e, o := range c.Operators {
		if e == "*" {
			continue
		}
		id, ok := ids[e]
		if !ok {
			return nil, fmt.Errorf("masking config: operator for unknown entity %q", e)
		}
		op, err := opOf(o)
		if err != nil {
			return nil, err
		}
		p.ops[id] = op
	}
	accounts := c.AccountFields
	if len(accounts) == 0 {
		accounts = DefaultAccountFields
	}
	for _, a := range accounts {
		p.accounts[normalizeName(a)] = true
	}
	for f, ents := range c.IgnoreFields {
		var m uint64
		for _, e := range ents {
			id, ok := ids[e]
			if !ok {
				return nil, fmt.Errorf("masking config: ignore_fields %q: unknown entity %q", f, e)
			}
			m |= 1 << id
		}
		p.ignore[normalizeName(f)] |= m
	}
	for i, n := range p.names {
		if p.ops[i] == opHMAC && len(c.HMACKey) == 0 && (p.on&(1<<i) != 0 || i >= int(numBuiltin)) {
			return nil, fmt.Errorf("masking config: entity %q uses hmac and no hmac_key is set", n)
		}
		u := strings.ToUpper(n)
		p.upper = append(p.upper, []byte(u))
		p.redacted = append(p.redacted, []byte("[REDACTED:"+u+"]"))
	}
	p.key = append([]byte(nil), c.HMACKey...)
	p.fieldHints = p.on&(1<<entSSN|1<<entPhone|1<<entABA) != 0
	return p, nil
}

// normalizeName lower-cases a field name and drops '_', '-', '.' and spaces,
// so account_number, accountNumber and Account-Number are one name.
func normalizeName(s string) string {
	return string(appendNormalized(nil, []byte(s)))
}

func appendNormalized(dst, s []byte) []byte {
	for _, c := range s {
		switch {
		case c >= 'A' && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		case c == '_' || c == '-' || c == ' ' || c == '.':
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
