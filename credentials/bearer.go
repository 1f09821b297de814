package credentials

import (
	"context"
	"errors"
	"strings"
)

// bearer presents a static token from a file, re-read when it changes
// (a Kubernetes projected service-account token is rotated in place).
type bearer struct {
	token *secret[string]
	spec  Bearer
}

func parseBearer(b []byte) (string, error) {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", errEmpty
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", errors.New("the token holds a line break or NUL")
	}
	return "Bearer " + s, nil
}

func newBearer(spec Bearer, o Options) (*bearer, error) {
	t, err := fileSecret("bearer.token_file", spec.TokenFile, o, parseBearer)
	if err != nil {
		return nil, err
	}
	return &bearer{token: t, spec: spec}, nil
}

// Kind is KindBearer.
func (b *bearer) Kind() Kind { return KindBearer }

// Close does nothing: there is no background work.
func (b *bearer) Close() error { return nil }

// String names where the token comes from.
func (b *bearer) String() string { return Spec{Bearer: &b.spec}.String() }

// GoString is String.
func (b *bearer) GoString() string { return b.String() }

// Inject sets Authorization to the file's token.
func (b *bearer) Inject(_ context.Context, req Outgoing) (Mutation, error) {
	v, err := b.token.get()
	if err != nil {
		return Mutation{}, err
	}
	return bearerMutation(req, v)
}

// bearerMutation sets Authorization and removes the agent's other
// credentials. A bearer upstream may be any HTTP API, whose own parameters
// may share a SAS parameter's name: the SAS parameters go only when the
// query holds a sig, that is when the agent sent a SAS.
func bearerMutation(req Outgoing, authorization string) (Mutation, error) {
	q, err := parseQuery(req.RawQuery)
	if err != nil {
		return Mutation{}, errors.New("bearer: " + err.Error())
	}
	return Mutation{
		Set:         []Header{{Name: "authorization", Value: authorization}},
		Remove:      agentCredentials(true),
		RemoveQuery: agentSASIfSigned(q),
	}, nil
}
