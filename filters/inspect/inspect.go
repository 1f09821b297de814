// Package inspect is the second stage of a request: it turns the raw request
// into an Action that policy can reason about (what the request does, how
// risky it is, one line an approver can read).
//
// Inspector is the seam; HTTP classifies by method and path until the
// parsers for SQL, Kubernetes, Azure, Cosmos DB and GraphQL land. An
// Inspector that cannot parse a request returns an Action with RiskUnknown,
// not an error; an error means the stage could not decide (503).
package inspect

import (
	"context"

	"github.com/custos-dev/custos/filters/request"
)

// Risk is an action's classification.
type Risk string

// Risks, from least to most.
const (
	RiskRead        Risk = "read"
	RiskWrite       Risk = "write"
	RiskDestructive Risk = "destructive"
	RiskAdmin       Risk = "admin"
	RiskUnknown     Risk = "unknown"
)

// Kinds of action.
const (
	KindHTTP = "http"
)

// Action is what a request does.
type Action struct {
	// Kind is the action's kind (http, sql, kubernetes, azure, cosmos, graphql).
	Kind string
	// Risk is the inspector's classification; RiskUnknown when the request
	// could not be parsed.
	Risk Risk
	// Summary is one line a human approver can read.
	Summary string
	// Details is the block for Kind in the policy input (CONTRACT.md), nil
	// for http.
	Details map[string]any
}

// Inspector classifies a request.
type Inspector interface {
	Inspect(ctx context.Context, r *request.Request) (Action, error)
}

// HTTP classifies by method: safe methods read, DELETE destroys, the rest
// write; a method it does not know is unknown.
type HTTP struct{}

// Inspect returns r's http action.
func (HTTP) Inspect(_ context.Context, r *request.Request) (Action, error) {
	risk := RiskUnknown
	switch r.Method {
	case "GET", "HEAD", "OPTIONS":
		risk = RiskRead
	case "POST", "PUT", "PATCH":
		risk = RiskWrite
	case "DELETE":
		risk = RiskDestructive
	}
	return Action{Kind: KindHTTP, Risk: risk, Summary: r.Method + " " + r.Path + " on " + r.Connection.Name}, nil
}
