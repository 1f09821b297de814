package inspect

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/custos-dev/custos/filters/request"
)

// GraphQL classifies GraphQL requests parsed with gqlparser: every
// operation of the document (and of every request of a batch), its type and
// its top-level fields, through aliases, fragment spreads and inline
// fragments. Queries and subscriptions read; mutations write, and a
// mutation field whose name starts with one of DestructivePrefixes is
// destructive.
type GraphQL struct {
	// DestructivePrefixes are lower-case mutation field name prefixes that
	// destroy; nil means DefaultDestructivePrefixes.
	DestructivePrefixes []string
}

// DefaultDestructivePrefixes are the mutation names taken as destructive.
var DefaultDestructivePrefixes = []string{"delete", "remove", "drop", "destroy", "purge", "truncate", "wipe", "erase"}

// maxGraphQLTokens bounds the parser's work on one document.
const maxGraphQLTokens = 20000

// Inspect returns r's graphql action.
func (g GraphQL) Inspect(_ context.Context, r *request.Request) (Action, error) {
	docs, err := graphQLDocuments(r)
	if err != nil {
		return unknown(KindGraphQL, r, err.Error()), nil
	}
	prefixes := g.DestructivePrefixes
	if prefixes == nil {
		prefixes = DefaultDestructivePrefixes
	}
	risk := RiskRead
	var ops []any
	var parts []string
	for _, d := range docs {
		doc, gerr := parser.ParseQueryWithTokenLimit(&ast.Source{Input: d}, maxGraphQLTokens)
		if gerr != nil {
			return unknown(KindGraphQL, r, "GraphQL does not parse: "+gerr.Error()), nil
		}
		if len(doc.Operations) == 0 {
			return unknown(KindGraphQL, r, "no operation"), nil
		}
		for _, op := range doc.Operations {
			fields, ok := topFields(op.SelectionSet, doc.Fragments, map[string]bool{}, 0)
			if !ok {
				return unknown(KindGraphQL, r, "fragments nest too deep or do not resolve"), nil
			}
			t := string(op.Operation)
			switch op.Operation {
			case ast.Query, ast.Subscription:
			case ast.Mutation:
				risk = Higher(risk, RiskWrite)
				for _, f := range fields {
					if hasAnyPrefix(strings.ToLower(f), prefixes) {
						risk = Higher(risk, RiskDestructive)
					}
				}
			default:
				return unknown(KindGraphQL, r, "operation type "+quoteShort(t)), nil
			}
			ops = append(ops, map[string]any{"type": t, "fields": fields})
			parts = append(parts, t+" "+strings.Join(fields, ", "))
		}
	}
	return Action{Kind: KindGraphQL, Risk: risk,
		Summary: oneLine("graphql on " + r.Connection.Name + ": " + strings.Join(parts, "; ")),
		Details: map[string]any{"operations": ops}}, nil
}

// topFields lists the names (not aliases) of a selection set's fields,
// looking through fragments.
func topFields(set ast.SelectionSet, frags ast.FragmentDefinitionList, seen map[string]bool, depth int) ([]string, bool) {
	if depth > 32 {
		return nil, false
	}
	out := []string{}
	for _, s := range set {
		var more []string
		ok := true
		switch s := s.(type) {
		case *ast.Field:
			more = []string{s.Name}
		case *ast.InlineFragment:
			more, ok = topFields(s.SelectionSet, frags, seen, depth+1)
		case *ast.FragmentSpread:
			f := frags.ForName(s.Name)
			if f == nil || seen[s.Name] {
				return nil, false
			}
			seen[s.Name] = true
			more, ok = topFields(f.SelectionSet, frags, seen, depth+1)
			delete(seen, s.Name)
		}
		if !ok {
			return nil, false
		}
		for _, m := range more {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out, true
}

// graphQLDocuments returns the documents of a request: the query parameter
// of a GET, an application/graphql body, or the query of a JSON body (one
// request or a batch of them).
func graphQLDocuments(r *request.Request) ([]string, error) {
	if r.Method == "GET" || r.Method == "HEAD" {
		q, ok, err := singleParam(r.RawQuery, "query")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errors.New("no query parameter")
		}
		return []string{q}, nil
	}
	if _, inQuery, _ := singleParam(r.RawQuery, "query"); inQuery {
		return nil, errors.New("a query both in the URL and the body")
	}
	body, err := fullBody(r)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(strings.ToLower(r.Headers["content-type"]), "application/graphql") {
		if !validUTF8(body) {
			return nil, errors.New("body is not valid UTF-8")
		}
		return []string{string(body)}, nil
	}
	v, err := strictJSON(body)
	if err != nil {
		return nil, err
	}
	reqs := []any{v}
	if a, ok := v.([]any); ok {
		if len(a) == 0 {
			return nil, errors.New("empty batch")
		}
		reqs = a
	}
	var docs []string
	for _, q := range reqs {
		s, ok := jsonPointer(q, "/query")
		text, isStr := s.(string)
		if !ok || !isStr {
			return nil, errors.New("a request without a query (persisted queries are not understood)")
		}
		docs = append(docs, text)
	}
	return docs, nil
}
