package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads the configuration file at path and parses it with [Parse].
// Problems in the file are returned as [Errors]; a file that cannot be read
// gives an error wrapping the read error and naming path. Only a regular file
// (or a symbolic link to one) of at most [MaxFileSize] bytes is read: anything
// else is refused before reading, with an error wrapping [ErrNotRegularFile]
// or [ErrFileTooLarge].
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	return Parse(data)
}

// Parse parses a YAML configuration, applies defaults and validates it. When
// the configuration has problems it returns nil and every problem found, as
// [Errors] (the first [MaxErrors] of them when there are more). A
// configuration larger than [MaxFileSize] bytes, or with more than [MaxNodes]
// YAML nodes once its aliases are expanded, is refused with that one error.
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, Errors{{Msg: fmt.Sprintf("the configuration is %d bytes, more than %s, the limit", len(data), sizeLimit)}}
	}
	root, errs := parseDocument(data)
	if errs != nil {
		return nil, errs
	}
	t := newTracker()
	cfg := Default()
	d := &decoder{t}
	d.config(root, cfg)
	applyDefaults(cfg)
	validate(cfg, t)
	if errs := t.result(); errs != nil {
		return nil, errs
	}
	return cfg, nil
}

// applyDefaults fills the per-connection defaults.
func applyDefaults(c *Config) {
	for i := range c.Connections {
		conn := &c.Connections[i]
		if conn.Kind == "" {
			conn.Kind = KindHTTP
		}
		if conn.PolicyMode == "" {
			conn.PolicyMode = PolicyModeEnforce
		}
		if conn.ClientCert == "" {
			conn.ClientCert = ClientCertNone
		}
		if conn.Kind == KindSQLHTTP && conn.Dialect == "" {
			conn.Dialect = DialectPostgres
		}
	}
	for i := range c.Identity.Issuers {
		iss := &c.Identity.Issuers[i]
		if iss.Algorithms == nil {
			iss.Algorithms = slices.Clone(DefaultAlgorithms)
		}
		if iss.Claims.Groups == "" {
			iss.Claims.Groups = DefaultGroupsClaim
		}
		if iss.Claims.Roles == "" {
			iss.Claims.Roles = DefaultRolesClaim
		}
	}
}

// parseDocument parses data as a single YAML document and returns its root
// node, or the one error that prevents it.
func parseDocument(data []byte) (*yaml.Node, Errors) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{Msg: "empty configuration"}}
		}
		return nil, Errors{syntaxError(data, err)}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, Errors{{Line: extra.Line, Msg: "a second YAML document (---) follows; the configuration must be a single document"}}
	case !errors.Is(err, io.EOF):
		return nil, Errors{syntaxError(data, err)}
	}
	if e := checkNodes(&doc); e != nil {
		return nil, Errors{e}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, Errors{{Msg: "empty configuration"}}
		}
		root = root.Content[0]
	}
	root = resolve(root)
	if isNull(root) {
		return nil, Errors{{Msg: "empty configuration"}}
	}
	return root, nil
}

var (
	syntaxLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	anchorRE     = regexp.MustCompile(`unknown anchor '([^']*)' referenced`)
)

// syntaxError converts a YAML parser error into an Error with its line. The
// parser leaves the line out for problems on line 1 and for unknown anchors.
func syntaxError(data []byte, err error) *Error {
	msg := err.Error()
	line := 1
	if m := syntaxLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if parserProblem(msg) {
			// The parser, unlike the scanner, reports 0-based lines.
			line++
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
		if m := anchorRE.FindStringSubmatch(msg); m != nil {
			line = aliasLine(data, m[1])
			msg = strings.Replace(msg, m[1], cut(m[1]), 1)
		}
	}
	return &Error{Line: line, Msg: "invalid YAML: " + msg}
}

// parserProblem reports whether msg is one of the problems reported by the
// YAML parser rather than its scanner.
func parserProblem(msg string) bool {
	switch msg {
	case "did not find expected <stream-start>",
		"did not find expected <document start>",
		"found undefined tag handle",
		"did not find expected node content",
		"did not find expected '-' indicator",
		"did not find expected key",
		"did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"found duplicate %YAML directive",
		"found incompatible YAML document",
		"found duplicate %TAG directive":
		return true
	}
	return false
}

// aliasLine returns the line of the first use of alias *name in data, or 0.
func aliasLine(data []byte, name string) int {
	for i, l := range strings.Split(string(data), "\n") {
		for rest := l; ; {
			j := strings.Index(rest, "*"+name)
			if j < 0 {
				break
			}
			end := j + 1 + len(name)
			if end == len(rest) || strings.ContainsRune(" \t,]}#\r", rune(rest[end])) {
				return i + 1
			}
			rest = rest[end:]
		}
	}
	return 0
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// decoder walks the YAML tree into a Config, recording every problem rather
// than stopping at the first.
type decoder struct {
	*tracker
}

// field is a key a mapping accepts and how to decode its value.
type field struct {
	key    string
	decode func(path string, v *yaml.Node)
}

// fail records a problem with the value at path and marks path as undecoded.
func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.bad[path] = true
	d.add(path, line, fmt.Sprintf(format, args...))
}

// typeError records that the value at path is not of the wanted type.
func (d *decoder) typeError(path string, v *yaml.Node, want string) {
	msg := "expected " + want + ", got " + describe(path, v)
	if want == "a string" && v.Kind == yaml.ScalarNode && !isNull(v) && !secretKey(path) {
		msg += " (quote it: " + quote(v.Value) + ")"
	}
	d.fail(path, v.Line, "%s", msg)
}

// describe names the type of v and, unless path may be secret, its value.
func describe(path string, v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
	default:
		return "an unsupported YAML node"
	}
	var kind string
	switch tag := v.ShortTag(); tag {
	case "!!null":
		return "no value (null)"
	case "!!str":
		if secretKey(path) {
			return "a string"
		}
		return "string " + quote(v.Value)
	case "!!int":
		kind = "integer"
	case "!!float":
		kind = "number"
	case "!!bool":
		kind = "boolean"
	case "!!timestamp":
		kind = "timestamp"
	default:
		return "a value tagged " + tag
	}
	if secretKey(path) {
		if kind == "integer" {
			return "an integer"
		}
		return "a " + kind
	}
	return kind + " " + cut(v.Value)
}

// key returns the name of mapping key k, or false after recording why it is
// not a usable key.
func (d *decoder) key(path string, k *yaml.Node) (string, bool) {
	k = resolve(k)
	if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
		d.fail(path, k.Line, "merge keys (<<) are not supported")
		return "", false
	}
	if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
		d.fail(path, k.Line, "keys must be strings, got %s", describe(path, k))
		return "", false
	}
	return k.Value, true
}

// mapping decodes the mapping v at path, handing each known key to its
// field. A null v is an empty mapping. It returns false if v is not a
// mapping.
func (d *decoder) mapping(path string, v *yaml.Node, fields []field) bool {
	present := map[string]bool{}
	if m := resolve(v); m.Kind == yaml.MappingNode {
		for i := 0; i < len(m.Content); i += 2 {
			present[resolve(m.Content[i]).Value] = true
		}
	}
	return d.entries(path, v, func(p, key string, k, val *yaml.Node) {
		for _, f := range fields {
			if f.key == key {
				f.decode(p, val)
				return
			}
		}
		known := make([]string, len(fields))
		for i, f := range fields {
			known[i] = f.key
		}
		msg := "unknown key " + quote(key)
		if s := suggest(key, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
			if !present[s] {
				// The value meant for s is reported here; do not also
				// report s as missing.
				d.bad[d.child(path, s)] = true
			}
		} else {
			msg += " (known keys: " + strings.Join(known, ", ") + ")"
		}
		d.fail(p, k.Line, "%s", msg)
	})
}

// entries walks the mapping v at path, calling each for every well-formed,
// non-duplicate entry. A null v is an empty mapping. It returns false if v is
// not a mapping.
func (d *decoder) entries(path string, v *yaml.Node, each func(p, key string, k, val *yaml.Node)) bool {
	v = resolve(v)
	if isNull(v) {
		return true
	}
	if v.Kind != yaml.MappingNode {
		d.typeError(path, v, "a mapping")
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		key, ok := d.key(path, k)
		if !ok {
			continue
		}
		p := d.child(path, key)
		if first, dup := seen[key]; dup {
			d.add(p, k.Line, fmt.Sprintf("duplicate key %s (first at line %d)", quote(key), first))
			continue
		}
		seen[key] = k.Line
		d.lines[p] = k.Line
		each(p, key, k, val)
	}
	return true
}

// sequence walks the list v at path, calling each for every element. A null
// v is an empty list.
func (d *decoder) sequence(path string, v *yaml.Node, each func(p string, i int, v *yaml.Node)) {
	v = resolve(v)
	if isNull(v) {
		return
	}
	if v.Kind != yaml.SequenceNode {
		d.typeError(path, v, "a list")
		return
	}
	for i, e := range v.Content {
		p := d.elem(path, i)
		d.lines[p] = e.Line
		each(p, i, resolve(e))
	}
}

// str returns the string scalar v, or false after recording a type error.
func (d *decoder) str(path string, v *yaml.Node) (string, bool) {
	v = resolve(v)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" {
		return v.Value, true
	}
	d.typeError(path, v, "a string")
	return "", false
}

// stringField decodes an optional string into dst; null leaves dst alone.
func (d *decoder) stringField(dst *string) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		if isNull(v) {
			return
		}
		if s, ok := d.str(p, v); ok {
			*dst = s
		}
	}
}

// boolField decodes an optional boolean into dst; null leaves dst alone.
func (d *decoder) boolField(dst *bool) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		v = resolve(v)
		if isNull(v) {
			return
		}
		if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
			if err := v.Decode(dst); err == nil {
				return
			}
		}
		d.typeError(p, v, "a boolean (true or false)")
	}
}

// intField decodes an optional integer into dst; null leaves dst alone.
func (d *decoder) intField(dst *int) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		v = resolve(v)
		if isNull(v) {
			return
		}
		if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" {
			var n int64
			if err := v.Decode(&n); err == nil && n >= -1<<31 && n < 1<<31 {
				*dst = int(n)
				return
			}
		}
		d.typeError(p, v, "an integer")
	}
}

// durationField decodes an optional Go duration string into dst; null
// leaves dst alone.
func (d *decoder) durationField(dst *time.Duration) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		v = resolve(v)
		if isNull(v) {
			return
		}
		if v.Kind != yaml.ScalarNode {
			d.typeError(p, v, "a duration such as 30s or 5m")
			return
		}
		dur, err := time.ParseDuration(v.Value)
		if err != nil || v.ShortTag() != "!!str" {
			shown := quote(v.Value)
			if v.ShortTag() != "!!str" {
				shown = cut(v.Value)
			}
			d.fail(p, v.Line, "%s is not a duration (use Go syntax such as 30s or 5m)", shown)
			return
		}
		*dst = dur
	}
}

// stringList decodes an optional list of strings into dst.
func (d *decoder) stringList(dst *[]string) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		if isNull(v) {
			return
		}
		out := []string{}
		d.sequence(p, v, func(ep string, _ int, e *yaml.Node) {
			// A bad element is kept as "" so that indexes match the file;
			// validation skips it.
			s, _ := d.str(ep, e)
			out = append(out, s)
		})
		if !d.bad[p] {
			*dst = out
		}
	}
}

// stringMap decodes an optional mapping of strings to strings into dst.
func (d *decoder) stringMap(dst *map[string]string) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		if isNull(v) {
			return
		}
		out := map[string]string{}
		if !d.entries(p, v, func(ep, key string, k, val *yaml.Node) {
			if key == "" {
				d.fail(ep, k.Line, "key must not be empty")
				return
			}
			if s, ok := d.str(ep, val); ok {
				out[key] = s
			}
		}) {
			return
		}
		*dst = out
	}
}

func (d *decoder) config(root *yaml.Node, c *Config) {
	d.mapping("", root, []field{
		{"listen", d.listen(&c.Listen)},
		{"identity", d.identity(&c.Identity)},
		{"policy", func(p string, v *yaml.Node) {
			d.mapping(p, v, []field{
				{"bundle", d.stringField(&c.Policy.Bundle)},
				{"poll_interval", d.durationField(&c.Policy.PollInterval)},
				{"verification_key_file", d.stringField(&c.Policy.VerificationKeyFile)},
				{"verification_key_id", d.stringField(&c.Policy.VerificationKeyID)},
				{"verification_algorithm", d.stringField(&c.Policy.VerificationAlgorithm)},
				{"decision_cache", d.intField(&c.Policy.DecisionCache)},
			})
		}},
		{"connections", d.connections(&c.Connections)},
		{"approvals", func(p string, v *yaml.Node) {
			var hold, timeout time.Duration
			var sawHold, sawTimeout bool
			d.mapping(p, v, []field{
				{"mode", d.stringField(&c.Approvals.Mode)},
				{"hold", func(p string, v *yaml.Node) { sawHold = true; d.durationField(&hold)(p, v) }},
				{"timeout", func(p string, v *yaml.Node) { sawTimeout = true; d.durationField(&timeout)(p, v) }},
				{"expiry", d.durationField(&c.Approvals.Expiry)},
				{"store", d.stringField(&c.Approvals.Store)},
				{"ui", func(p string, v *yaml.Node) {
					u := &ApprovalsUI{}
					if d.mapping(p, v, []field{
						{"issuer", d.stringField(&u.Issuer)},
						{"client_id", d.stringField(&u.ClientID)},
						{"client_secret_file", d.stringField(&u.ClientSecretFile)},
						{"base_url", d.stringField(&u.BaseURL)},
					}) {
						c.Approvals.UI = u
					}
				}},
				{"webhooks", func(p string, v *yaml.Node) {
					d.sequence(p, v, func(wp string, _ int, e *yaml.Node) {
						var w Webhook
						d.mapping(wp, e, []field{
							{"url", d.stringField(&w.URL)},
							{"secret_file", d.stringField(&w.SecretFile)},
							{"secret_env", d.stringField(&w.SecretEnv)},
						})
						c.Approvals.Webhooks = append(c.Approvals.Webhooks, w)
					})
				}},
			})
			switch {
			case sawHold && sawTimeout:
				d.fail(p+".timeout", v.Line, "approvals.timeout is the older name of approvals.hold: give one of them")
			case sawHold:
				c.Approvals.Timeout, c.Approvals.holdKey = hold, "hold"
			case sawTimeout:
				c.Approvals.Timeout, c.Approvals.holdKey = timeout, "timeout"
			}
		}},
		{"masking", d.masking(&c.Masking)},
		{"audit", func(p string, v *yaml.Node) {
			d.mapping(p, v, []field{
				{"dir", d.stringField(&c.Audit.Dir)},
				{"signing_key_file", d.stringField(&c.Audit.SigningKeyFile)},
				{"previous_signing_key_file", d.stringField(&c.Audit.PreviousSigningKeyFile)},
				{"durability", d.stringField(&c.Audit.Durability)},
				{"on_failure", d.stringField(&c.Audit.OnFailure)},
				{"kafka", func(p string, v *yaml.Node) {
					k := &AuditKafka{EventsTopic: DefaultEventsTopic, CheckpointsTopic: DefaultCheckpointsTopic}
					if d.mapping(p, v, []field{
						{"brokers", d.stringList(&k.Brokers)},
						{"events_topic", d.stringField(&k.EventsTopic)},
						{"checkpoints_topic", d.stringField(&k.CheckpointsTopic)},
						{"tls", func(p string, v *yaml.Node) {
							t := &KafkaTLS{}
							if d.mapping(p, v, []field{
								{"ca_file", d.stringField(&t.CAFile)},
								{"cert_file", d.stringField(&t.CertFile)},
								{"key_file", d.stringField(&t.KeyFile)},
							}) {
								k.TLS = t
							}
						}},
					}) {
						c.Audit.Kafka = k
					}
				}},
			})
		}},
		{"dev", func(p string, v *yaml.Node) {
			dev := &Dev{}
			if d.mapping(p, v, []field{
				{"issuer", d.boolField(&dev.Issuer)},
				{"demo_upstream", d.stringField(&dev.DemoUpstream)},
				{"demo_warehouse", d.stringField(&dev.DemoWarehouse)},
			}) {
				c.Dev = dev
			}
		}},
	})
}

func (d *decoder) listen(l *Listen) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		d.mapping(p, v, []field{
			{"grpc", d.stringField(&l.GRPC)},
			{"xds", d.stringField(&l.XDS)},
			{"http", d.stringField(&l.HTTP)},
			{"dataplane", d.stringField(&l.Dataplane)},
			{"tls", func(p string, v *yaml.Node) {
				t := &TLS{}
				if d.mapping(p, v, []field{
					{"cert_file", d.stringField(&t.CertFile)},
					{"key_file", d.stringField(&t.KeyFile)},
					{"client_ca_file", d.stringField(&t.ClientCAFile)},
					{"allowed_clients", d.stringList(&t.AllowedClients)},
				}) {
					l.TLS = t
				}
			}},
			{"insecure", d.boolField(&l.Insecure)},
			{"agent_tls", func(p string, v *yaml.Node) {
				t := &AgentTLS{}
				if d.mapping(p, v, []field{
					{"cert_file", d.stringField(&t.CertFile)},
					{"key_file", d.stringField(&t.KeyFile)},
					{"client_ca_file", d.stringField(&t.ClientCAFile)},
				}) {
					l.AgentTLS = t
				}
			}},
		})
	}
}

func (d *decoder) identity(id *Identity) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		d.mapping(p, v, []field{
			{"issuers", func(p string, v *yaml.Node) {
				d.sequence(p, v, func(ep string, _ int, e *yaml.Node) {
					iss := Issuer{ClockSkew: DefaultClockSkew}
					d.mapping(ep, e, []field{
						{"issuer", d.stringField(&iss.Issuer)},
						{"audiences", d.stringList(&iss.Audiences)},
						{"discovery_url", d.stringField(&iss.DiscoveryURL)},
						{"algorithms", d.stringList(&iss.Algorithms)},
						{"clock_skew", d.durationField(&iss.ClockSkew)},
						{"claims", func(p string, v *yaml.Node) {
							d.mapping(p, v, []field{
								{"groups", d.stringField(&iss.Claims.Groups)},
								{"roles", d.stringField(&iss.Claims.Roles)},
							})
						}},
						{"group_names", d.stringMap(&iss.GroupNames)},
					})
					id.Issuers = append(id.Issuers, iss)
				})
			}},
		})
	}
}

func (d *decoder) connections(dst *[]Connection) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		d.sequence(p, v, func(ep string, _ int, e *yaml.Node) {
			var c Connection
			d.mapping(ep, e, []field{
				{"name", d.stringField(&c.Name)},
				{"upstream", d.stringField(&c.Upstream)},
				{"hosts", d.stringList(&c.Hosts)},
				{"kind", d.stringField(&c.Kind)},
				{"masking", d.stringField(&c.Masking)},
				{"policy_mode", d.stringField(&c.PolicyMode)},
				{"forward_token", d.boolField(&c.ForwardToken)},
				{"labels", d.stringMap(&c.Labels)},
				{"dialect", d.stringField(&c.Dialect)},
				{"statement_from", d.stringField(&c.StatementFrom)},
				{"audit_on_failure", d.stringField(&c.AuditOnFailure)},
				{"client_cert", d.stringField(&c.ClientCert)},
				{"credentials", func(p string, v *yaml.Node) {
					cr := &Credentials{}
					if d.mapping(p, v, []field{
						{"azure_shared_key", func(p string, v *yaml.Node) {
							k := &AzureSharedKey{}
							if d.mapping(p, v, []field{
								{"account", d.stringField(&k.Account)}, {"key_file", d.stringField(&k.KeyFile)},
								{"key_env", d.stringField(&k.KeyEnv)}, {"service", d.stringField(&k.Service)},
							}) {
								cr.AzureSharedKey = k
							}
						}},
						{"sas", func(p string, v *yaml.Node) {
							k := &SASToken{}
							if d.mapping(p, v, []field{{"token_file", d.stringField(&k.TokenFile)}}) {
								cr.SAS = k
							}
						}},
						{"oauth_client_credentials", func(p string, v *yaml.Node) {
							k := &OAuthClientCredentials{}
							if d.mapping(p, v, []field{
								{"token_url", d.stringField(&k.TokenURL)}, {"client_id", d.stringField(&k.ClientID)},
								{"client_secret_file", d.stringField(&k.ClientSecretFile)}, {"scope", d.stringField(&k.Scope)},
							}) {
								cr.OAuthClientCredentials = k
							}
						}},
						{"bearer", func(p string, v *yaml.Node) {
							k := &BearerToken{}
							if d.mapping(p, v, []field{{"token_file", d.stringField(&k.TokenFile)}}) {
								cr.Bearer = k
							}
						}},
					}) {
						c.Credentials = cr
					}
				}},
			})
			// Every element is kept, even a malformed one, so that indexes
			// in later messages match the file.
			*dst = append(*dst, c)
		})
	}
}

func (d *decoder) masking(m *Masking) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		d.mapping(p, v, []field{
			{"profiles", func(p string, v *yaml.Node) {
				profiles := map[string]Profile{}
				if !d.entries(p, v, func(ep, name string, _, val *yaml.Node) {
					var prof Profile
					d.mapping(ep, val, []field{
						{"entities", d.stringList(&prof.Entities)},
						{"operators", d.stringMap(&prof.Operators)},
						{"account_fields", d.stringList(&prof.AccountFields)},
						{"ignore_fields", func(p string, v *yaml.Node) {
							out := map[string][]string{}
							if d.entries(p, v, func(fp, key string, _, val *yaml.Node) {
								var list []string
								d.stringList(&list)(fp, val)
								out[key] = list
							}) {
								prof.IgnoreFields = out
							}
						}},
						{"fields", func(p string, v *yaml.Node) {
							d.sequence(p, v, func(fp string, _ int, e *yaml.Node) {
								var f FieldRule
								d.mapping(fp, e, []field{
									{"path", d.stringField(&f.Path)},
									{"entity", d.stringField(&f.Entity)},
									{"operator", d.stringField(&f.Operator)},
								})
								prof.Fields = append(prof.Fields, f)
							})
						}},
						{"patterns", func(p string, v *yaml.Node) {
							d.sequence(p, v, func(fp string, _ int, e *yaml.Node) {
								var pt Pattern
								d.mapping(fp, e, []field{
									{"name", d.stringField(&pt.Name)},
									{"regex", d.stringField(&pt.Regex)},
									{"operator", d.stringField(&pt.Operator)},
								})
								prof.Patterns = append(prof.Patterns, pt)
							})
						}},
						{"best_effort", d.boolField(&prof.BestEffort)},
					})
					profiles[name] = prof
				}) {
					return
				}
				if len(profiles) > 0 {
					m.Profiles = profiles
				}
			}},
			{"module", d.stringField(&m.Module)},
			{"hmac_key_file", d.stringField(&m.HMACKeyFile)},
			{"hmac_key_env", d.stringField(&m.HMACKeyEnv)},
			{"pool_size", d.intField(&m.PoolSize)},
			{"call_timeout", d.durationField(&m.CallTimeout)},
		})
	}
}
