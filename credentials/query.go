package credentials

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// queryParam is one name=value pair of a raw query, as sent and decoded.
type queryParam struct {
	raw         string // "name=value" exactly as on the wire
	name, value string // decoded
}

// parseQuery splits a raw query on '&' (never ';': Azure Storage does not
// treat it as a separator) and decodes each name and value as a form
// ('+' is a space). Empty pairs are skipped. A name or value that is not
// valid percent-encoding is an error: such a request cannot be signed as
// the service would read it.
func parseQuery(raw string) ([]queryParam, error) {
	if raw == "" {
		return nil, nil
	}
	out := make([]queryParam, 0, strings.Count(raw, "&")+1)
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		n, v, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(n)
		if err != nil {
			return nil, fmt.Errorf("query parameter name is not valid percent-encoding")
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("query parameter %q: value is not valid percent-encoding", safeName(name))
		}
		out = append(out, queryParam{raw: pair, name: name, value: value})
	}
	return out, nil
}

// safeName keeps a parameter name printable in an error: at most 40 bytes
// of it; a name is not a secret, but it comes from the agent.
func safeName(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// sasParams are the query parameters that make up a shared access
// signature (account, service and user delegation SAS, and the Table
// service's range parameters): the agent's are removed whenever Custos
// injects credentials, so that no agent-held SAS travels on beside them.
var sasParams = map[string]bool{
	"sv": true, "ss": true, "srt": true, "sp": true, "se": true, "st": true,
	"spr": true, "sip": true, "si": true, "sr": true, "sig": true, "sdd": true,
	"ses": true, "skoid": true, "sktid": true, "skt": true, "ske": true,
	"sks": true, "skv": true, "skdutid": true, "saoid": true, "suoid": true,
	"scid": true, "sduoid": true, "tn": true, "spk": true, "srk": true,
	"epk": true, "erk": true, "rscc": true, "rscd": true, "rsce": true,
	"rscl": true, "rsct": true,
}

func isSASParam(name string) bool { return sasParams[strings.ToLower(name)] }

// agentSAS lists the SAS parameters of q, by name as sent (each once).
func agentSAS(q []queryParam) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range q {
		if isSASParam(p.name) && !seen[p.name] {
			seen[p.name] = true
			out = append(out, p.name)
		}
	}
	return out
}

// agentSASIfSigned is agentSAS when q holds a sig, nothing otherwise.
func agentSASIfSigned(q []queryParam) []string {
	for _, p := range q {
		if strings.EqualFold(p.name, "sig") {
			return agentSAS(q)
		}
	}
	return nil
}

// RewriteQuery returns the raw query the upstream must receive once m is
// applied to raw: parameters named in RemoveQuery dropped, the others kept
// byte for byte, AddQuery appended percent-encoded. A data plane that sets
// the whole path can use it rather than per-parameter edits.
func (m Mutation) RewriteQuery(raw string) string {
	if len(m.RemoveQuery) == 0 && len(m.AddQuery) == 0 {
		return raw
	}
	drop := make(map[string]bool, len(m.RemoveQuery))
	for _, n := range m.RemoveQuery {
		drop[n] = true
	}
	var b strings.Builder
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		n, _, _ := strings.Cut(pair, "=")
		if name, err := url.QueryUnescape(n); err == nil && drop[name] {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	for _, p := range m.AddQuery {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(p.Name))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p.Value))
	}
	return b.String()
}

// canonicalQuery appends the query part of a SharedKey canonicalized
// resource: names lower-cased and sorted, "\nname:v1,v2" with each name's
// decoded values sorted and joined with commas. Parameters named in skip
// (those the Mutation removes) are left out, as the service will not see
// them.
func canonicalQuery(b *strings.Builder, q []queryParam, skip map[string]bool) {
	if len(q) == 0 {
		return
	}
	byName := make(map[string][]string, len(q))
	names := make([]string, 0, len(q))
	for _, p := range q {
		if skip[p.name] {
			continue
		}
		n := strings.ToLower(p.name)
		if _, ok := byName[n]; !ok {
			names = append(names, n)
		}
		byName[n] = append(byName[n], p.value)
	}
	sort.Strings(names)
	for _, n := range names {
		vs := byName[n]
		sort.Strings(vs)
		b.WriteByte('\n')
		b.WriteString(n)
		b.WriteByte(':')
		for i, v := range vs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(v)
		}
	}
}

// compParam is the decoded value of the first comp parameter, the only
// one SharedKey for Table signs.
func compParam(q []queryParam, skip map[string]bool) (string, bool) {
	for _, p := range q {
		if strings.EqualFold(p.name, "comp") && !skip[p.name] {
			return p.value, true
		}
	}
	return "", false
}
