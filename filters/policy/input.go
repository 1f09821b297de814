package policy

import (
	"net/url"
	"strings"
	"time"

	"github.com/custos-dev/custos/filters/request"
)

// credentialParams are query parameters that carry credentials (Azure SAS
// signatures, OAuth tokens in URLs): their values never reach policy.
var credentialParams = map[string]bool{
	"sig": true, "access_token": true, "code": true, "client_secret": true, "password": true, "token": true,
}

// Redacted replaces a credential's value in the input.
const Redacted = "[REDACTED]"

// Document is the policy input of CONTRACT.md ("Policy input and
// decision") for in, as plain JSON values. It never holds credentials:
// credential headers never reach the request, and credential query
// parameters are redacted.
func Document(in Input) map[string]any {
	p := in.Principal
	principal := map[string]any{
		"issuer": p.Issuer, "subject": p.Subject, "kind": p.Kind,
		"groups": strList(p.Groups), "roles": strList(p.Roles), "app": p.App,
		"actor": strList(p.Actor), "claims": anyMap(p.Claims),
		"groups_unknown": p.GroupsUnknown, "group_names": strList(p.GroupNames),
	}
	r := in.Request
	var conn, req map[string]any
	if r != nil {
		labels := make(map[string]any, len(r.Connection.Labels))
		for k, v := range r.Connection.Labels {
			labels[k] = v
		}
		conn = map[string]any{"name": r.Connection.Name, "kind": r.Connection.Kind, "labels": labels}
		headers := make(map[string]any, len(r.Headers))
		for k, v := range r.Headers {
			if !request.IsCredentialHeader(k) {
				headers[k] = v
			}
		}
		req = map[string]any{
			"id": r.ID, "method": r.Method, "path": r.Path, "original_path": r.OriginalPath,
			"query": query(r.RawQuery), "headers": headers, "body_bytes": r.BodyBytes,
		}
	}
	action := map[string]any{"kind": in.Action.Kind, "risk": string(in.Action.Risk), "summary": in.Action.Summary}
	if in.Action.Details != nil && in.Action.Kind != "" {
		action[in.Action.Kind] = in.Action.Details
	}
	grants := make([]any, 0, len(in.Grants))
	for _, g := range in.Grants {
		grants = append(grants, map[string]any{"id": g.ID, "scope": g.Scope, "expires": g.Expires.UTC().Format(time.RFC3339)})
	}
	return map[string]any{
		"principal": principal, "connection": conn, "request": req, "action": action,
		"grants": grants, "time": in.Time.UTC().Format(time.RFC3339Nano),
	}
}

// query is the parsed query, each parameter a list of values, credentials
// redacted.
func query(raw string) map[string]any {
	out := map[string]any{}
	if raw == "" {
		return out
	}
	q, _ := url.ParseQuery(raw)
	for k, vs := range q {
		list := make([]any, len(vs))
		for i, v := range vs {
			if credentialParams[strings.ToLower(k)] {
				v = Redacted
			}
			list[i] = v
		}
		out[k] = list
	}
	return out
}

func strList(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func anyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
