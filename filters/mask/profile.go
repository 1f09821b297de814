package mask

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/custos-dev/custos/filters/mask/engine"
)

// Spec defines one named masking profile (masking.profiles.NAME): the
// engine's configuration and whether unreadable bodies may pass.
type Spec struct {
	engine.Config
	// BestEffort lets a body the engine cannot read (an unknown content
	// type or encoding) pass unmasked. Strict (false) is the default; a
	// union of profiles is best effort only when every one of them is.
	BestEffort bool
}

// ErrUnknownProfile says a profile name is neither built in nor configured.
var ErrUnknownProfile = errors.New("unknown masking profile")

// ErrUnreadable says a body's content type or encoding is one the engine
// cannot read, under a strict profile: the response is refused.
var ErrUnreadable = errors.New("the masking engine cannot read this body")

// Body describes the response body a stream masks, from its headers.
type Body struct {
	// ContentType is the Content-Type header ("" reads as text).
	ContentType string
	// ContentEncoding is the Content-Encoding header: "", identity, gzip
	// (x-gzip) and deflate are read; anything else is unreadable.
	ContentEncoding string
}

// Encodings is the Accept-Encoding value to pin on masked requests: the
// encodings the engine decodes and re-encodes.
const Encodings = "gzip, deflate"

// format says how a content type is read, or false for one the engine
// cannot read.
func format(contentType string) (engine.Format, bool) {
	if strings.TrimSpace(contentType) == "" {
		return engine.Text, true
	}
	// A bare lower-case type ("application/json") is its own media type;
	// anything else is parsed.
	mt := contentType
	if strings.IndexFunc(mt, func(r rune) bool { return r == ';' || unicode.IsSpace(r) || r >= 'A' && r <= 'Z' }) >= 0 {
		var err error
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			mt = strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]))
		}
	}
	switch {
	case mt == "application/x-ndjson" || mt == "application/ndjson" || mt == "application/jsonl" ||
		mt == "application/x-jsonlines" || mt == "application/jsonlines":
		return engine.NDJSON, true
	case mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json"):
		return engine.JSON, true
	case mt == "text/csv" || mt == "application/csv":
		return engine.CSV, true
	case strings.HasPrefix(mt, "text/"), mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/x-www-form-urlencoded", mt == "application/javascript",
		mt == "application/x-pem-file", mt == "application/yaml", mt == "application/x-yaml":
		return engine.Text, true
	}
	return 0, false
}

type encoding uint8

const (
	identity encoding = iota
	gzipEnc
	deflateEnc
)

func contentEncoding(ce string) (encoding, bool) {
	switch strings.ToLower(strings.TrimSpace(ce)) {
	case "", "identity":
		return identity, true
	case "gzip", "x-gzip":
		return gzipEnc, true
	case "deflate":
		return deflateEnc, true
	}
	return 0, false
}

// union is the effective profile for a set of names, compiled once.
type union struct {
	id         int
	cfg        engine.Config
	json       []byte
	bestEffort bool
	native     *engine.Profile
	// names are the entity names its reports may count (reportNames).
	names map[string]bool
}

// strength orders operators: a union keeps the one that hides most.
var strength = map[string]int{engine.Last4: 1, engine.HMAC: 2, "": 3, engine.Redact: 3, engine.Null: 4}

// merge is the union of specs: masking only adds up. Entities, account
// fields, field rules and patterns add; an entity's operator is the
// strongest; a field is ignored for an entity only when every spec with
// that entity ignores it.
func merge(specs []Spec, key []byte) (engine.Config, bool) {
	var c engine.Config
	best := true
	has := map[string]int{}
	ignored := map[string]map[string]int{}
	ops := map[string]string{}
	for _, s := range specs {
		best = best && s.BestEffort
		for _, e := range s.Entities {
			if !slices.Contains(c.Entities, e) {
				c.Entities = append(c.Entities, e)
			}
			has[e]++
		}
		for e, o := range s.Operators {
			if cur, ok := ops[e]; !ok || strength[o] > strength[cur] {
				ops[e] = o
			}
		}
		for _, a := range s.AccountFields {
			if !slices.Contains(c.AccountFields, a) {
				c.AccountFields = append(c.AccountFields, a)
			}
		}
		for f, es := range s.IgnoreFields {
			f = strings.ToLower(f)
			if ignored[f] == nil {
				ignored[f] = map[string]int{}
			}
			for _, e := range es {
				ignored[f][e]++
			}
		}
		c.Fields = append(c.Fields, s.Fields...)
		c.Patterns = append(c.Patterns, s.Patterns...)
		if len(s.Custom) > 0 && len(c.Custom) == 0 {
			c.Custom = s.Custom
		}
	}
	if len(specs) > 1 && len(c.AccountFields) > 0 {
		// a spec without account fields means the defaults: keep them
		for _, s := range specs {
			if len(s.AccountFields) == 0 && slices.Contains(s.Entities, engine.Account) {
				c.AccountFields = append(c.AccountFields, engine.DefaultAccountFields...)
				break
			}
		}
	}
	for f, es := range ignored {
		for e, n := range es {
			if n == has[e] || has[e] == 0 {
				if c.IgnoreFields == nil {
					c.IgnoreFields = map[string][]string{}
				}
				c.IgnoreFields[f] = append(c.IgnoreFields[f], e)
			}
		}
		sort.Strings(c.IgnoreFields[f])
	}
	if len(ops) > 0 {
		c.Operators = ops
	}
	c.HMACKey = key
	sort.Strings(c.Entities)
	return c, best
}

// profiles resolves profile names to specs: the built-ins and the
// configured ones.
type profiles struct {
	specs map[string]Spec
	key   []byte
}

func newProfiles(configured map[string]Spec, key []byte) (profiles, error) {
	ps := profiles{specs: map[string]Spec{}, key: key}
	for _, n := range engine.BuiltinNames() {
		c, _ := engine.Builtin(n)
		ps.specs[n] = Spec{Config: c}
	}
	for n, s := range configured {
		if _, ok := engine.Builtin(n); ok {
			return profiles{}, fmt.Errorf("masking profile %q: a built-in profile cannot be redefined", n)
		}
		ps.specs[n] = s
	}
	return ps, nil
}

func (ps profiles) union(p Profile) (engine.Config, bool, error) {
	var specs []Spec
	for _, n := range p.Names {
		s, ok := ps.specs[n]
		if !ok {
			return engine.Config{}, false, fmt.Errorf("masking profile %q: %w", n, ErrUnknownProfile)
		}
		specs = append(specs, s)
	}
	c, best := merge(specs, ps.key)
	return c, best, nil
}

func configJSON(c engine.Config) ([]byte, error) {
	// Each pattern goes with its program, for modules that carry no
	// regular expression engine (docs/masking-abi.md).
	c.Patterns = append([]engine.Pattern(nil), c.Patterns...)
	for k := range c.Patterns {
		prog, err := engine.CompileProg(c.Patterns[k].Regex)
		if err != nil {
			return nil, fmt.Errorf("masking config: pattern %q: %w", c.Patterns[k].Name, err)
		}
		c.Patterns[k].Prog = prog
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("masking config: %w", err)
	}
	return b, nil
}
