package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// nameRE is the syntax of connection and masking profile names; a connection
// name becomes a URL prefix.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

const nameRule = "use 1-63 lower-case letters, digits and hyphens, starting and ending with a letter or digit"

// validator checks the semantics of a decoded Config, skipping values that
// could not be decoded (they have been reported already).
type validator struct {
	*tracker
}

func validate(c *Config, t *tracker) {
	v := &validator{t}
	v.listen(c)
	v.identity(c)
	v.policy(c)
	v.connections(c)
	v.approvals(c)
	v.masking(c)
	v.audit(c)
}

func (v *validator) audit(c *Config) {
	ap := v.child("", "audit")
	if c.Audit.Dir == "" {
		v.errorf(v.child(ap, "dir"), "must not be empty")
	}
	v.oneOf(v.child(ap, "durability"), "durability", c.Audit.Durability, Durabilities)
	v.oneOf(v.child(ap, "on_failure"), "on_failure", c.Audit.OnFailure, OnFailures)
	if k := c.Audit.SigningKeyFile; k != "" && c.Audit.Dir != "" {
		if rel, err := filepath.Rel(filepath.Clean(c.Audit.Dir), filepath.Clean(k)); err == nil && !strings.HasPrefix(rel, "..") {
			v.errorf(v.child(ap, "signing_key_file"), "must be kept apart from audit.dir (whoever can rewrite the log must not hold the key)")
		}
	}
	if c.Audit.PreviousSigningKeyFile != "" && c.Audit.SigningKeyFile == "" {
		v.errorf(v.child(ap, "previous_signing_key_file"), "is set without signing_key_file (the key that takes over)")
	}
	if k := c.Audit.Kafka; k != nil {
		kp := v.child(ap, "kafka")
		if len(k.Brokers) == 0 {
			v.errorf(v.child(kp, "brokers"), "at least one broker (host:port) is required")
		}
		for i, b := range k.Brokers {
			if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
				v.errorf(v.elem(v.child(kp, "brokers"), i), "%s is not a host:port", quote(b))
			}
		}
		for _, t := range []struct{ key, val string }{{"events_topic", k.EventsTopic}, {"checkpoints_topic", k.CheckpointsTopic}} {
			if !topicRE.MatchString(t.val) {
				v.errorf(v.child(kp, t.key), "%s is not a Kafka topic name (1-249 of letters, digits, . _ -)", quote(t.val))
			}
		}
		if k.EventsTopic == k.CheckpointsTopic {
			v.errorf(v.child(kp, "checkpoints_topic"), "must differ from events_topic")
		}
		if t := k.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
			v.errorf(v.child(v.child(kp, "tls"), "key_file"), "cert_file and key_file go together")
		}
	}
}

// topicRE is Kafka's rule for topic names.
var topicRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// errorf records a problem at path unless path could not be decoded.
func (v *validator) errorf(path, format string, args ...any) {
	if v.skip(path) {
		return
	}
	v.add(path, v.line(path), fmt.Sprintf(format, args...))
}

// oneOf checks that val, at path, is one of allowed; what names the value.
func (v *validator) oneOf(path, what, val string, allowed []string) bool {
	if v.skip(path) {
		return false
	}
	if slices.Contains(allowed, val) {
		return true
	}
	msg := fmt.Sprintf("%s is not a valid %s (use one of: %s)", quote(val), what, strings.Join(allowed, ", "))
	if s := suggest(val, allowed); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	v.errorf(path, "%s", msg)
	return false
}

type listener struct {
	path, addr, host string
	port             int
}

func (v *validator) listen(c *Config) {
	lp := v.child("", "listen")
	if t := c.Listen.AgentTLS; t != nil {
		ap := v.child(lp, "agent_tls")
		if t.CertFile == "" {
			v.errorf(v.child(ap, "cert_file"), "is required")
		}
		if t.KeyFile == "" {
			v.errorf(v.child(ap, "key_file"), "is required")
		}
	}
	var ls []listener
	check := func(p, addr string) {
		if v.skip(p) {
			return
		}
		host, port, problem := splitAddress(addr)
		if problem != "" {
			v.errorf(p, "%s is not a valid address: %s", quote(addr), problem)
			return
		}
		ls = append(ls, listener{path: p, addr: addr, host: strings.ToLower(host), port: port})
	}
	if t := c.Listen.TLS; t != nil {
		tp := v.child(lp, "tls")
		for _, f := range []struct{ key, val string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"client_ca_file", t.ClientCAFile}} {
			if f.val == "" {
				v.errorf(v.child(tp, f.key), "is required: mutual TLS needs Custos' certificate, its key and the CA of the data plane's certificates")
			}
		}
		for i, id := range t.AllowedClients {
			if !validClientIdentity(id) {
				v.errorf(fmt.Sprintf("%s[%d]", v.child(tp, "allowed_clients"), i), "%s is neither a URI SAN (such as spiffe://custos.local/envoy) nor a DNS name", quote(id))
			}
		}
		if c.Listen.Insecure {
			v.errorf(v.child(lp, "insecure"), "listen.tls and insecure: true exclude each other; remove one")
		}
	}
	check(v.child(lp, "grpc"), c.Listen.GRPC)
	check(v.child(lp, "xds"), c.Listen.XDS)
	check(v.child(lp, "http"), c.Listen.HTTP)
	check(v.child(lp, "dataplane"), c.Listen.Dataplane)
	if c.Dev != nil && c.Dev.DemoUpstream != "" {
		check(v.child(v.child("", "dev"), "demo_upstream"), c.Dev.DemoUpstream)
	}
	if c.Dev != nil && c.Dev.DemoWarehouse != "" {
		check(v.child(v.child("", "dev"), "demo_warehouse"), c.Dev.DemoWarehouse)
	}
	for i, b := range ls {
		if b.port == 0 {
			continue
		}
		for _, a := range ls[:i] {
			if a.port == b.port && overlap(a.host, b.host) {
				v.errorf(b.path, "%s conflicts with %s (%s); each listener needs its own address", quote(b.addr), a.path, quote(a.addr))
				break
			}
		}
	}
}

// splitAddress splits a host:port listen address. The host may be empty
// (all interfaces), an IP address or a DNS name; the port is 0-65535.
func splitAddress(addr string) (host string, port int, problem string) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, "use host:port, such as 127.0.0.1:9000"
	}
	if ps == "" || strings.Trim(ps, "0123456789") != "" {
		return "", 0, fmt.Sprintf("port %s is not a number", quote(ps))
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port > 65535 {
		return "", 0, fmt.Sprintf("port %s is out of range (0-65535)", cut(ps))
	}
	if host != "" && net.ParseIP(host) == nil && !dnsName(strings.ToLower(host)) {
		return "", 0, fmt.Sprintf("%s is not a valid host name or IP address", quote(host))
	}
	return host, port, ""
}

// overlap reports whether listeners on hosts a and b, with the same port,
// would collide.
func overlap(a, b string) bool {
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	loopback := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "localhost" || ip != nil && ip.IsLoopback()
	}
	switch {
	case a == b, wildcard(a), wildcard(b):
		return true
	case a == "localhost" || b == "localhost":
		return loopback(a) && loopback(b)
	}
	ia, ib := net.ParseIP(a), net.ParseIP(b)
	return ia != nil && ib != nil && ia.Equal(ib)
}

// dnsName reports whether s is a valid lower-case DNS name.
func dnsName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func (v *validator) identity(c *Config) {
	ip := v.child(v.child("", "identity"), "issuers")
	seen := map[string]string{}
	for i, iss := range c.Identity.Issuers {
		p := v.elem(ip, i)
		pi := v.child(p, "issuer")
		switch problem := checkIssuer(iss.Issuer); {
		case iss.Issuer == "":
			v.errorf(pi, "is required")
		case problem != "":
			v.errorf(pi, "%s", problem)
		default:
			if first, dup := seen[iss.Issuer]; dup {
				v.errorf(pi, "duplicate issuer %s (first at %s)", quote(iss.Issuer), first)
			} else if !v.skip(pi) {
				seen[iss.Issuer] = p
			}
		}
		pa := v.child(p, "audiences")
		if len(iss.Audiences) == 0 {
			v.errorf(pa, "at least one audience is required")
		}
		for j, a := range iss.Audiences {
			if strings.TrimSpace(a) == "" {
				v.errorf(v.elem(pa, j), "must not be empty")
			}
		}
		if iss.DiscoveryURL != "" {
			pd := v.child(p, "discovery_url")
			if problem := checkIssuer(iss.DiscoveryURL); problem != "" {
				v.errorf(pd, "%s", problem)
			} else if !strings.HasSuffix(iss.DiscoveryURL, DiscoveryPath) {
				v.errorf(pd, "%s must be the URL of the discovery document, ending in %s", showURL(iss.DiscoveryURL), DiscoveryPath)
			}
		}
		v.algorithms(v.child(p, "algorithms"), iss.Algorithms)
		ps := v.child(p, "clock_skew")
		if iss.ClockSkew < 0 {
			v.errorf(ps, "%s must not be negative", iss.ClockSkew)
		} else if iss.ClockSkew > MaxClockSkew {
			v.errorf(ps, "%s exceeds the maximum of %s", iss.ClockSkew, MaxClockSkew)
		}
		pc := v.child(p, "claims")
		for _, c := range []struct{ key, name string }{{"groups", iss.Claims.Groups}, {"roles", iss.Claims.Roles}} {
			if slices.Contains(strings.Split(c.name, "."), "") {
				v.errorf(v.child(pc, c.key), "%s is not a claim name (a name, or a dotted path such as realm_access.roles)", quote(c.name))
			}
		}
		pg := v.child(p, "group_names")
		for id, name := range iss.GroupNames {
			if strings.TrimSpace(name) == "" {
				v.errorf(v.child(pg, id), "must not be empty")
			}
		}
	}
}

// algorithms checks an issuer's allowed signature algorithms at path.
func (v *validator) algorithms(path string, algs []string) {
	if v.skip(path) {
		return
	}
	if len(algs) == 0 {
		v.errorf(path, "at least one algorithm is required (default: %s)", strings.Join(DefaultAlgorithms, ", "))
		return
	}
	seen := map[string]bool{}
	for i, a := range algs {
		pi := v.elem(path, i)
		switch {
		case v.skip(pi):
		case strings.EqualFold(a, "none"):
			v.errorf(pi, "%q is never accepted: an unsigned token proves nothing", a)
		case len(a) > 2 && strings.EqualFold(a[:2], "HS"):
			v.errorf(pi, "%s is never accepted: an HMAC key is a shared secret, and a verifier that holds only public keys must not accept one (use one of: %s)", quote(a), strings.Join(Algorithms, ", "))
		case seen[a]:
			v.errorf(pi, "duplicate algorithm %s", quote(a))
		default:
			v.oneOf(pi, "algorithm", a, Algorithms)
		}
		seen[a] = true
	}
}

// checkIssuer returns what is wrong with issuer URL s, or "".
func checkIssuer(s string) string {
	u, problem := absoluteURL(s)
	if problem != "" {
		return problem
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Sprintf("%s must use https (http is allowed only for 127.0.0.1 or localhost)", showURL(s))
		}
	default:
		return fmt.Sprintf("%s must be an https URL", showURL(s))
	}
	return ""
}

// absoluteURL parses s as an absolute URL with a host, no credentials, no
// query and no fragment, and returns it or what is wrong.
func absoluteURL(s string) (*url.URL, string) {
	if !strings.Contains(s, "://") {
		return nil, fmt.Sprintf("%s is not an absolute URL (include the scheme, such as http:// or https://)", showURL(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		reason := err.Error()
		var ue *url.Error
		if errors.As(err, &ue) {
			reason = ue.Err.Error()
		}
		// The reason may quote part of s.
		return nil, fmt.Sprintf("%s is not a valid URL: %s", showURL(s), cut(reason))
	}
	switch {
	case u.Scheme == "" || u.Opaque != "":
		return nil, fmt.Sprintf("%s is not an absolute URL (include the scheme, such as http:// or https://)", showURL(s))
	case u.User != nil:
		return nil, "must not contain credentials (user:password@); supply them outside the configuration"
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Sprintf("%s has no host", showURL(s))
	case u.RawQuery != "" || u.ForceQuery:
		return nil, "must not have a query string"
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, fmt.Sprintf("%s must not have a fragment", showURL(s))
	}
	h := u.Hostname()
	if net.ParseIP(h) == nil && !dnsName(strings.ToLower(h)) {
		return nil, fmt.Sprintf("%s: %s is not a valid host name or IP address", showURL(s), quote(h))
	}
	if ps := u.Port(); ps != "" {
		if n, err := strconv.Atoi(ps); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Sprintf("%s: port %s is out of range (1-65535)", showURL(s), cut(ps))
		}
	}
	return u, ""
}

// showURL quotes s for a message, hiding any credentials and query string,
// which may be secret.
func showURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.ContainsAny(s, "@?") {
			return "the URL"
		}
		return quote(s)
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	return quote(u.String())
}

func (v *validator) connections(c *Config) {
	cp := v.child("", "connections")
	names := map[string]string{}
	hosts := map[string]string{}
	for i := range c.Connections {
		conn := &c.Connections[i]
		p := v.elem(cp, i)
		if v.skip(p) {
			continue
		}

		pn := v.child(p, "name")
		switch {
		case conn.Name == "":
			v.errorf(pn, "is required")
		case !nameRE.MatchString(conn.Name):
			v.errorf(pn, "%s is not a valid connection name (%s; it becomes the URL prefix)", quote(conn.Name), nameRule)
		case names[conn.Name] != "":
			v.errorf(pn, "duplicate connection name %s (first at %s)", quote(conn.Name), names[conn.Name])
		default:
			if !v.skip(pn) {
				names[conn.Name] = p
			}
		}

		pu := v.child(p, "upstream")
		if conn.Upstream == "" {
			v.errorf(pu, "is required")
		} else if !v.skip(pu) {
			if u, problem := absoluteURL(conn.Upstream); problem != "" {
				v.errorf(pu, "%s", problem)
			} else if u.Scheme != "http" && u.Scheme != "https" {
				v.errorf(pu, "%s must be an http or https URL", showURL(conn.Upstream))
			} else {
				conn.upstreamURL = u
			}
		}

		ph := v.child(p, "hosts")
		for j, h := range conn.Hosts {
			pj := v.elem(ph, j)
			if v.skip(pj) {
				continue
			}
			lower := strings.ToLower(h)
			conn.Hosts[j] = lower
			if problem := checkHost(lower); problem != "" {
				v.errorf(pj, "%s is not a valid host: %s", quote(h), problem)
				continue
			}
			key := hostOnly(lower)
			if first, dup := hosts[key]; dup {
				v.errorf(pj, "duplicate host %s (first at %s)", quote(h), first)
				continue
			}
			hosts[key] = pj
		}

		kindOK := v.oneOf(v.child(p, "kind"), "kind", conn.Kind, Kinds)
		v.oneOf(v.child(p, "policy_mode"), "policy_mode", conn.PolicyMode, PolicyModes)
		if conn.AuditOnFailure != "" {
			v.oneOf(v.child(p, "audit_on_failure"), "audit_on_failure", conn.AuditOnFailure, OnFailures)
		}
		if cr := conn.Credentials; cr != nil {
			v.credentials(v.child(p, "credentials"), conn, cr)
		}
		if conn.ClientCert != "" && v.oneOf(v.child(p, "client_cert"), "client_cert", conn.ClientCert, ClientCertModes) &&
			conn.ClientCert != ClientCertNone && (c.Listen.AgentTLS == nil || c.Listen.AgentTLS.ClientCAFile == "") {
			v.errorf(v.child(p, "client_cert"), "%s needs listen.agent_tls.client_ca_file (the CA agents' certificates come from)", conn.ClientCert)
		}

		if conn.Masking != "" {
			if _, defined := c.Masking.Profiles[conn.Masking]; !defined && !BuiltinProfile(conn.Masking) {
				v.errorf(v.child(p, "masking"), "%s", unknownProfile(c, conn.Masking))
			}
		}

		pd, ps := v.child(p, "dialect"), v.child(p, "statement_from")
		switch {
		case !kindOK:
		case conn.Kind != KindSQLHTTP:
			if conn.Dialect != "" {
				v.errorf(pd, "only valid for kind %s (this connection's kind is %q)", KindSQLHTTP, conn.Kind)
			}
			if conn.StatementFrom != "" {
				v.errorf(ps, "only valid for kind %s (this connection's kind is %q)", KindSQLHTTP, conn.Kind)
			}
		default:
			v.oneOf(pd, "dialect", conn.Dialect, Dialects)
			if conn.StatementFrom != "" {
				if problem := checkStatementFrom(conn.StatementFrom); problem != "" {
					v.errorf(ps, "%s is not a valid statement source: %s", quote(conn.StatementFrom), problem)
				}
			}
		}
	}
}

func unknownProfile(c *Config, name string) string {
	var defined []string
	for n := range c.Masking.Profiles {
		defined = append(defined, n)
	}
	slices.Sort(defined)
	msg := "unknown masking profile " + quote(name)
	if s := suggest(name, append(slices.Clone(BuiltinProfiles), defined...)); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	msg += "; built-in profiles: " + strings.Join(BuiltinProfiles, ", ")
	if len(defined) > 0 {
		msg += "; defined under masking.profiles: " + strings.Join(defined, ", ")
	}
	return msg
}

// checkHost returns what is wrong with a lower-case connection host entry,
// a DNS name optionally followed by :port, or "".
func checkHost(h string) string {
	name := h
	if strings.Contains(h, ":") {
		hn, ps, err := net.SplitHostPort(h)
		if err != nil {
			return "use a DNS name, optionally with :port"
		}
		if n, err := strconv.Atoi(ps); err != nil || strings.Trim(ps, "0123456789") != "" || n < 1 || n > 65535 {
			return fmt.Sprintf("port %s is not a number in 1-65535", quote(ps))
		}
		name = hn
	}
	if !dnsName(name) {
		return "not a DNS name (letters, digits and hyphens in dot-separated labels)"
	}
	return ""
}

// checkStatementFrom returns what is wrong with a statement_from value, or "".
func checkStatementFrom(s string) string {
	const use = "use json:/POINTER, query:PARAM, form:PARAM or body"
	kind, rest, found := strings.Cut(s, ":")
	switch {
	case s == "body":
		return ""
	case !found:
		return use
	case kind == "json":
		if !strings.HasPrefix(rest, "/") {
			return `the JSON pointer must start with "/", as in json:/query`
		}
		for i := 0; i < len(rest); i++ {
			if rest[i] == '~' && (i+1 == len(rest) || rest[i+1] != '0' && rest[i+1] != '1') {
				return "invalid JSON pointer escape (use ~0 for ~ and ~1 for /)"
			}
		}
		return ""
	case kind == "query" || kind == "form":
		if rest == "" {
			return fmt.Sprintf("no parameter name after %q, as in %s:q", kind+":", kind)
		}
		if strings.ContainsAny(rest, " \t\r\n") {
			return "the parameter name must not contain spaces"
		}
		return ""
	default:
		return use
	}
}

// credentials checks a connection's upstream credential at path.
func (v *validator) credentials(path string, conn *Connection, cr *Credentials) {
	n := 0
	for _, set := range []bool{cr.AzureSharedKey != nil, cr.SAS != nil, cr.OAuthClientCredentials != nil, cr.Bearer != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		v.errorf(path, "give exactly one of azure_shared_key, sas, oauth_client_credentials, bearer")
		return
	}
	if conn.ForwardToken {
		v.errorf(path, "credentials and forward_token: true exclude each other (the agent's token is never sent with injected credentials)")
	}
	need := func(key, val string) {
		if strings.TrimSpace(val) == "" {
			v.errorf(v.child(path, key), "is required")
		}
	}
	switch {
	case cr.AzureSharedKey != nil:
		k, p := cr.AzureSharedKey, v.child(path, "azure_shared_key")
		need("azure_shared_key.account", k.Account)
		if (k.KeyFile == "") == (k.KeyEnv == "") {
			v.errorf(p, "give exactly one of key_file and key_env")
		}
		if k.Service != "" {
			v.oneOf(v.child(p, "service"), "storage service", k.Service, []string{"blob", "queue", "file", "table"})
		}
	case cr.SAS != nil:
		need("sas.token_file", cr.SAS.TokenFile)
	case cr.OAuthClientCredentials != nil:
		k, p := cr.OAuthClientCredentials, v.child(path, "oauth_client_credentials")
		if problem := checkIssuer(k.TokenURL); problem != "" {
			v.errorf(v.child(p, "token_url"), "%s", problem)
		}
		need("oauth_client_credentials.client_id", k.ClientID)
		need("oauth_client_credentials.client_secret_file", k.ClientSecretFile)
		need("oauth_client_credentials.scope", k.Scope)
	case cr.Bearer != nil:
		need("bearer.token_file", cr.Bearer.TokenFile)
	}
}

func (v *validator) policy(c *Config) {
	pp := v.child("", "policy")
	b := c.Policy.Bundle
	if strings.Contains(b, "://") {
		if problem := checkIssuer(b); problem != "" {
			v.errorf(v.child(pp, "bundle"), "%s", problem)
		}
	} else if strings.HasPrefix(b, "builtin:") && b != BuiltinBundle {
		v.errorf(v.child(pp, "bundle"), "%s is not a built-in bundle (the one there is: %s)", quote(b), BuiltinBundle)
	}
	pi := v.child(pp, "poll_interval")
	if t := c.Policy.PollInterval; t < MinPolicyPollInterval || t > MaxPolicyPollInterval {
		v.errorf(pi, "%s must be between %s and %s", t, MinPolicyPollInterval, MaxPolicyPollInterval)
	}
	if n := c.Policy.DecisionCache; n < 0 || n > MaxDecisionCache {
		v.errorf(v.child(pp, "decision_cache"), "%d must be between 0 (no cache) and %d decisions", n, MaxDecisionCache)
	}
	if c.Policy.VerificationKeyFile == "" {
		for _, k := range []struct{ key, val string }{{"verification_key_id", c.Policy.VerificationKeyID}, {"verification_algorithm", c.Policy.VerificationAlgorithm}} {
			if k.val != "" {
				v.errorf(v.child(pp, k.key), "is set without verification_key_file")
			}
		}
	} else if b == "" || b == BuiltinBundle {
		v.errorf(v.child(pp, "verification_key_file"), "is set, but policy.bundle names no directory or bundle server to verify")
	}
	if c.Policy.VerificationAlgorithm != "" {
		v.oneOf(v.child(pp, "verification_algorithm"), "bundle signature algorithm", c.Policy.VerificationAlgorithm, BundleAlgorithms)
	}
}

func (v *validator) approvals(c *Config) {
	ap := v.child("", "approvals")
	v.oneOf(v.child(ap, "mode"), "mode", c.Approvals.Mode, ApprovalModes)
	key := c.Approvals.holdKey
	if key == "" {
		key = "hold"
	}
	pt := v.child(ap, key)
	switch t := c.Approvals.Timeout; {
	case t <= 0:
		v.errorf(pt, "%s must be greater than zero", t)
	case t > MaxApprovalTimeout:
		v.errorf(pt, "%s exceeds the maximum of 24h", t)
	case t > MaxHoldTimeout && c.Approvals.Mode == ApprovalModeHold:
		v.errorf(pt, "%s exceeds the maximum of 59m for mode hold (Envoy holds a request at most 1h); use mode async for longer approvals", t)
	}
	pe := v.child(ap, "expiry")
	switch e := c.Approvals.Expiry; {
	case e <= 0:
		v.errorf(pe, "%s must be greater than zero", e)
	case e > MaxApprovalExpiry:
		v.errorf(pe, "%s exceeds the maximum of 720h (30 days)", e)
	}
	if s := c.Approvals.Store; strings.Contains(s, "://") && !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
		v.errorf(v.child(ap, "store"), "a URL store must be postgres:// (anything else is a file path)")
	}
	if u := c.Approvals.UI; u != nil {
		up := v.child(ap, "ui")
		if problem := checkIssuer(u.Issuer); problem != "" {
			v.errorf(v.child(up, "issuer"), "%s", problem)
		}
		if strings.TrimSpace(u.ClientID) == "" {
			v.errorf(v.child(up, "client_id"), "is required (the page's client at the issuer)")
		}
		if b, problem := absoluteURLWithQuery(u.BaseURL); problem != "" {
			v.errorf(v.child(up, "base_url"), "%s", problem)
		} else if b.Path != "" && b.Path != "/" || b.RawQuery != "" {
			v.errorf(v.child(up, "base_url"), "%s must be an origin (scheme, host and port) without a path", showURL(u.BaseURL))
		} else if b.Scheme != "https" && !loopbackHost(b.Hostname()) {
			v.errorf(v.child(up, "base_url"), "%s must use https (http only on loopback): the page's cookies carry sessions", showURL(u.BaseURL))
		}
	}
	pw := v.child(ap, "webhooks")
	for i, w := range c.Approvals.Webhooks {
		p := v.elem(pw, i)
		if u, problem := absoluteURLWithQuery(w.URL); problem != "" {
			v.errorf(v.child(p, "url"), "%s", problem)
		} else if u.Scheme != "https" && !loopbackHost(u.Hostname()) {
			v.errorf(v.child(p, "url"), "%s must use https (http only on loopback)", showURL(w.URL))
		}
		if (w.SecretFile == "") == (w.SecretEnv == "") {
			v.errorf(p, "give exactly one of secret_file and secret_env (the HMAC key that signs each post)")
		}
	}
}

// absoluteURLWithQuery parses s as an absolute http(s) URL with a host
// (a query is allowed), or says what is wrong.
func absoluteURLWithQuery(s string) (*url.URL, string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Sprintf("%s is not an absolute http(s) URL without credentials", showURL(s))
	}
	return u, ""
}

func loopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}

func (v *validator) masking(c *Config) {
	pp := v.child(v.child("", "masking"), "profiles")
	names := make([]string, 0, len(c.Masking.Profiles))
	for n := range c.Masking.Profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		prof := c.Masking.Profiles[name]
		p := v.child(pp, name)
		switch {
		case BuiltinProfile(name):
			v.errorf(p, "%s is a built-in profile and cannot be redefined", quote(name))
		case !nameRE.MatchString(name):
			v.errorf(p, "%s is not a valid profile name (%s)", quote(name), nameRule)
		}
		pe := v.child(p, "entities")
		if len(prof.Entities) == 0 {
			v.errorf(pe, "at least one entity is required (known: %s)", strings.Join(Entities, ", "))
		}
		seen := map[string]bool{}
		for j, e := range prof.Entities {
			pj := v.elem(pe, j)
			if v.skip(pj) {
				continue
			}
			switch {
			case !KnownEntity(e):
				msg := "unknown entity " + quote(e)
				if s := suggest(e, Entities); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				v.errorf(pj, "%s; known entities: %s", msg, strings.Join(Entities, ", "))
			case seen[e]:
				v.errorf(pj, "duplicate entity %s", quote(e))
			}
			seen[e] = true
		}
		po := v.child(p, "operators")
		for ent, op := range prof.Operators {
			if ent != "*" && !KnownEntity(ent) {
				v.errorf(v.child(po, ent), "unknown entity %s (use an entity name or \"*\")", quote(ent))
			}
			v.oneOf(v.child(po, ent), "operator", op, Operators)
		}
		pf := v.child(p, "fields")
		for j, f := range prof.Fields {
			pj := v.elem(pf, j)
			if !strings.HasPrefix(f.Path, "/") {
				v.errorf(v.child(pj, "path"), "%s is not a JSON pointer (it starts with /; a segment may be *)", quote(f.Path))
			}
			if f.Operator != "" {
				v.oneOf(v.child(pj, "operator"), "operator", f.Operator, Operators)
			}
		}
		pp2 := v.child(p, "patterns")
		for j, pt := range prof.Patterns {
			pj := v.elem(pp2, j)
			if !nameRE.MatchString(pt.Name) {
				v.errorf(v.child(pj, "name"), "%s is not a valid entity name (%s)", quote(pt.Name), nameRule)
			}
			if _, err := regexp.Compile(pt.Regex); err != nil || pt.Regex == "" {
				v.errorf(v.child(pj, "regex"), "not a regular expression (Go RE2 syntax)")
			}
			if pt.Operator != "" {
				v.oneOf(v.child(pj, "operator"), "operator", pt.Operator, Operators)
			}
		}
		uses := func(op string) bool { return op == "hmac" }
		hmac := false
		for _, op := range prof.Operators {
			hmac = hmac || uses(op)
		}
		for _, f := range prof.Fields {
			hmac = hmac || uses(f.Operator)
		}
		for _, pt := range prof.Patterns {
			hmac = hmac || uses(pt.Operator)
		}
		if hmac && c.Masking.HMACKeyFile == "" && c.Masking.HMACKeyEnv == "" {
			v.errorf(p, "uses the hmac operator: set masking.hmac_key_file or masking.hmac_key_env")
		}
	}
	mp := v.child("", "masking")
	if c.Masking.HMACKeyFile != "" && c.Masking.HMACKeyEnv != "" {
		v.errorf(v.child(mp, "hmac_key_env"), "give one of hmac_key_file and hmac_key_env")
	}
	if n := c.Masking.PoolSize; n < 0 || n > 1024 {
		v.errorf(v.child(mp, "pool_size"), "%d must be between 0 (one per CPU) and 1024", n)
	}
	if t := c.Masking.CallTimeout; t < 0 || t > time.Minute {
		v.errorf(v.child(mp, "call_timeout"), "%s must be between 0 (the default, 2s) and 1m", t)
	}
}

// validClientIdentity accepts a URI with a scheme and a host (a SPIFFE id)
// or a DNS name.
func validClientIdentity(id string) bool {
	if u, err := url.Parse(id); err == nil && u.Scheme != "" && u.Host != "" {
		return true
	}
	if id == "" || len(id) > 253 || strings.HasPrefix(id, ".") || strings.HasSuffix(id, ".") {
		return false
	}
	for _, label := range strings.Split(id, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || (c == '*' && i == 0 && len(label) == 1)) {
				return false
			}
		}
	}
	return true
}
