package policy

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

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

// DocumentValue is Document built directly as an OPA value: what Decide
// evaluates with, without the JSON round trip OPA makes of a Go map. It
// equals ast.InterfaceToValue(Document(in)).
func DocumentValue(in Input) (ast.Value, error) { return documentValue(in, nil) }

// documentValue is DocumentValue reusing the sections in built.
func documentValue(in Input, built map[string]ast.Value) (ast.Value, error) {
	obj := ast.NewObject()
	for _, name := range sections {
		v, ok := built[name]
		if !ok {
			var err error
			if v, err = sectionValue(in, name); err != nil {
				return nil, err
			}
		}
		obj.Insert(ast.StringTerm(name), ast.NewTerm(v))
	}
	return obj, nil
}

// sections are the top-level keys of the input document.
var sections = []string{"principal", "connection", "request", "action", "grants", "time"}

// sectionValue is the input document's key name, built alone.
func sectionValue(in Input, name string) (ast.Value, error) {
	switch name {
	case "principal":
		p := in.Principal
		claims, err := ast.InterfaceToValue(anyMap(p.Claims))
		if err != nil {
			return nil, fmt.Errorf("principal claims: %w", err)
		}
		return ast.NewObject(
			item("issuer", ast.StringTerm(p.Issuer)), item("subject", ast.StringTerm(p.Subject)), item("kind", ast.StringTerm(p.Kind)),
			item("groups", strArray(p.Groups)), item("roles", strArray(p.Roles)), item("app", ast.StringTerm(p.App)),
			item("actor", strArray(p.Actor)), item("claims", ast.NewTerm(claims)),
			item("groups_unknown", ast.BooleanTerm(p.GroupsUnknown)), item("group_names", strArray(p.GroupNames)),
		), nil
	case "connection":
		r := in.Request
		if r == nil {
			return ast.Null{}, nil
		}
		labels := ast.NewObject()
		for k, v := range r.Connection.Labels {
			labels.Insert(ast.StringTerm(k), ast.StringTerm(v))
		}
		return ast.NewObject(item("name", ast.StringTerm(r.Connection.Name)), item("kind", ast.StringTerm(r.Connection.Kind)), item("labels", ast.NewTerm(labels))), nil
	case "request":
		r := in.Request
		if r == nil {
			return ast.Null{}, nil
		}
		headers := ast.NewObject()
		for k, v := range r.Headers {
			if !request.IsCredentialHeader(k) {
				headers.Insert(ast.StringTerm(k), ast.StringTerm(v))
			}
		}
		q := ast.NewObject()
		if r.RawQuery != "" {
			vals, _ := url.ParseQuery(r.RawQuery)
			for k, vs := range vals {
				terms := make([]*ast.Term, len(vs))
				for i, v := range vs {
					if credentialParams[strings.ToLower(k)] {
						v = Redacted
					}
					terms[i] = ast.StringTerm(v)
				}
				q.Insert(ast.StringTerm(k), ast.ArrayTerm(terms...))
			}
		}
		return ast.NewObject(
			item("id", ast.StringTerm(r.ID)), item("method", ast.StringTerm(r.Method)), item("path", ast.StringTerm(r.Path)),
			item("original_path", ast.StringTerm(r.OriginalPath)), item("query", ast.NewTerm(q)), item("headers", ast.NewTerm(headers)),
			item("body_bytes", ast.IntNumberTerm(int(r.BodyBytes))),
		), nil
	case "action":
		action := ast.NewObject(item("kind", ast.StringTerm(in.Action.Kind)), item("risk", ast.StringTerm(string(in.Action.Risk))),
			item("summary", ast.StringTerm(in.Action.Summary)))
		if in.Action.Details != nil && in.Action.Kind != "" {
			d, err := ast.InterfaceToValue(in.Action.Details)
			if err != nil {
				return nil, fmt.Errorf("action details: %w", err)
			}
			action.Insert(ast.StringTerm(in.Action.Kind), ast.NewTerm(d))
		}
		return action, nil
	case "grants":
		grants := make([]*ast.Term, len(in.Grants))
		for i, g := range in.Grants {
			grants[i] = ast.ObjectTerm(item("id", ast.StringTerm(g.ID)), item("scope", ast.StringTerm(g.Scope)),
				item("expires", ast.StringTerm(g.Expires.UTC().Format(time.RFC3339))))
		}
		return ast.NewArray(grants...), nil
	case "time":
		return ast.String(in.Time.UTC().Format(time.RFC3339Nano)), nil
	}
	return nil, nil // not a key of the document: nothing there
}

// leafValue is the value documentValue(in) holds at p, for the paths of
// one field of a section, taken straight from in (the decision cache's
// keys, without building the sections): known is false for any other
// path. It must agree with sectionValue (TestLeafValueAgreesWithTheDocument).
func leafValue(in Input, p ast.Ref) (v ast.Value, known bool) {
	if len(p) != 3 {
		return nil, false
	}
	sec, _ := p[1].Value.(ast.String)
	field, ok := p[2].Value.(ast.String)
	if !ok {
		return nil, false
	}
	switch sec {
	case "principal":
		pr := in.Principal
		switch field {
		case "issuer":
			return ast.String(pr.Issuer), true
		case "subject":
			return ast.String(pr.Subject), true
		case "kind":
			return ast.String(pr.Kind), true
		case "app":
			return ast.String(pr.App), true
		case "groups":
			return strArray(pr.Groups).Value, true
		case "roles":
			return strArray(pr.Roles).Value, true
		case "actor":
			return strArray(pr.Actor).Value, true
		case "group_names":
			return strArray(pr.GroupNames).Value, true
		case "groups_unknown":
			return ast.Boolean(pr.GroupsUnknown), true
		}
	case "connection", "request":
		r := in.Request
		if r == nil {
			return nil, true // the section is null: nothing under it
		}
		switch {
		case sec == "connection" && field == "name":
			return ast.String(r.Connection.Name), true
		case sec == "connection" && field == "kind":
			return ast.String(r.Connection.Kind), true
		case sec == "request" && field == "id":
			return ast.String(r.ID), true
		case sec == "request" && field == "method":
			return ast.String(r.Method), true
		case sec == "request" && field == "path":
			return ast.String(r.Path), true
		case sec == "request" && field == "original_path":
			return ast.String(r.OriginalPath), true
		}
	case "action":
		if in.Action.Details != nil && string(field) == in.Action.Kind {
			return nil, false // the details, under the kind's name
		}
		switch field {
		case "kind":
			return ast.String(in.Action.Kind), true
		case "risk":
			return ast.String(string(in.Action.Risk)), true
		case "summary":
			return ast.String(in.Action.Summary), true
		}
	}
	return nil, false
}

func item(k string, v *ast.Term) [2]*ast.Term { return ast.Item(ast.StringTerm(k), v) }

func strArray(s []string) *ast.Term {
	terms := make([]*ast.Term, len(s))
	for i, v := range s {
		terms[i] = ast.StringTerm(v)
	}
	return ast.ArrayTerm(terms...)
}
