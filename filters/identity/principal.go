package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// selectedClaims are the claims a principal keeps for policy and audit
// (Principal.Claims), when the token has them: the tenant, how the
// principal signed in, readable names, and Entra ID's managed identity
// and agent identity claims. Nothing else of the token is kept.
var selectedClaims = []string{
	"tid", "ver", "idtyp", "scp", "scope", "amr", "acr", "appidacr", "azpacr", "idp",
	"name", "preferred_username", "upn", "email",
	"xms_mirid", "xms_par_app_azp", "xms_act_fct", "xms_sub_fct", "xms_tnt_fct", "xms_idrel",
}

// maxActors bounds the delegation chain read from nested act claims.
const maxActors = 16

// principal builds the principal of a verified token of is from its claims.
//
// Entra ID's tokens are read as ENTRA.md describes them: oid (when present)
// is the subject, azp or appid the app, and the kind is human only for a
// delegated token (scp present) without agent facet claims; app-only
// tokens (idtyp app, a managed identity's xms_mirid, or no scp) and any
// token with agent facets are workloads. Other OIDC issuers fit the same
// rules with their groups and roles claims named in the configuration.
func (is *issuer) principal(c map[string]any) Principal {
	p := Principal{Issuer: is.cfg.Issuer, Subject: str(c, "oid")}
	if p.Subject == "" {
		p.Subject = str(c, "sub")
	}
	for _, k := range []string{"azp", "appid", "client_id"} {
		if p.App = str(c, k); p.App != "" {
			break
		}
	}
	_, act := c["xms_act_fct"]
	_, sub := c["xms_sub_fct"]
	agent := act || sub
	delegated := str(c, "scp") != ""
	switch {
	case agent, str(c, "idtyp") == "app", str(c, "xms_mirid") != "", !delegated:
		p.Kind = KindWorkload
	default:
		p.Kind = KindHuman
	}
	p.Groups = strs(path(c, is.cfg.Claims.Groups))
	p.GroupsUnknown = overage(c, is.cfg.Claims.Groups)
	p.Roles = strs(path(c, is.cfg.Claims.Roles))
	for _, g := range p.Groups {
		if n, ok := is.cfg.GroupNames[g]; ok {
			p.GroupNames = append(p.GroupNames, n)
		}
	}
	p.Actor = actors(c)
	if len(p.Actor) == 0 && agent && delegated && p.App != "" {
		// An agent acting for a signed-in user: the user is the subject,
		// the agent identity (the app) the actor.
		p.Actor = []string{p.App}
	}
	for _, k := range selectedClaims {
		if v, ok := c[k]; ok {
			if p.Claims == nil {
				p.Claims = map[string]any{}
			}
			p.Claims[k] = v
		}
	}
	p.Session = session(p.Issuer, p.Subject, c)
	return p
}

// str returns the string claim k, "" when absent or not a string.
func str(c map[string]any, k string) string {
	s, _ := c[k].(string)
	return s
}

// path returns the claim at a dotted name (realm_access.roles), looking
// first for the name as it is.
func path(c map[string]any, name string) any {
	if v, ok := c[name]; ok {
		return v
	}
	var cur any = c
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// strs reads a list of strings, or one string, as a list; other values are
// skipped.
func strs(v any) []string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// overage reports whether the token says its groups claim is elsewhere
// (OpenID Connect distributed claims, Entra ID's group overage) or that
// it has groups it does not list (Entra ID's hasgroups).
func overage(c map[string]any, groups string) bool {
	if names, ok := c["_claim_names"].(map[string]any); ok {
		if _, ok := names[groups]; ok {
			return true
		}
	}
	has, _ := c["hasgroups"].(bool)
	return has
}

// actors reads the delegation chain of nested act claims (RFC 8693),
// outermost (the current actor) first.
func actors(c map[string]any) []string {
	var out []string
	for a, ok := c["act"].(map[string]any); ok && len(out) < maxActors; a, ok = a["act"].(map[string]any) {
		id := ""
		for _, k := range []string{"sub", "oid", "client_id", "azp", "appid"} {
			if id = str(a, k); id != "" {
				break
			}
		}
		if id == "" {
			id = "unknown"
		}
		out = append(out, id)
	}
	return out
}

// session derives the session name of a token: sid (the sign-in session),
// else jti (the token), else a hash of issuer, subject and iat. A value
// that is not a valid session name (1-128 letters, digits and . _ : -) is
// hashed.
func session(issuer, subject string, c map[string]any) string {
	for _, k := range []string{"sid", "jti"} {
		if v := str(c, k); v != "" {
			if ValidSessionName(v) {
				return v
			}
			return hashed(k, v)
		}
	}
	iat := ""
	if n, ok := c["iat"].(float64); ok {
		iat = strconv.FormatFloat(n, 'f', -1, 64)
	}
	return hashed("iat", issuer, subject, iat)
}

func hashed(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return kind + "-" + hex.EncodeToString(h.Sum(nil))[:32]
}

// ValidSessionName reports whether s may name a session (x-custos-session,
// or one derived from a token): 1 to 128 letters, digits and . _ : -.
func ValidSessionName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
