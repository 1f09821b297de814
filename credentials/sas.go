package credentials

import (
	"context"
	"errors"
	"strings"
)

// sas appends a shared access signature to every request's query,
// replacing the SAS parameters the agent sent.
type sas struct {
	token *secret[[]Param]
	spec  SAS
}

// parseSAS reads a SAS token file: the query string of a SAS URL, with or
// without its leading '?'. It must hold a sig and only SAS parameters, so
// that a token file cannot smuggle other parameters into every request.
func parseSAS(b []byte) ([]Param, error) {
	s := strings.TrimPrefix(strings.TrimSpace(string(b)), "?")
	if s == "" {
		return nil, errEmpty
	}
	q, err := parseQuery(s)
	if err != nil {
		return nil, errors.New("the SAS token is not a valid query string")
	}
	out := make([]Param, 0, len(q))
	hasSig := false
	for _, p := range q {
		if !isSASParam(p.name) {
			return nil, errors.New("the SAS token holds a parameter that is not a SAS parameter: " + safeName(p.name))
		}
		if p.name == "sig" && p.value != "" {
			hasSig = true
		}
		out = append(out, Param{Name: p.name, Value: p.value})
	}
	if !hasSig {
		return nil, errors.New("the SAS token has no sig")
	}
	return out, nil
}

func newSAS(spec SAS, o Options) (*sas, error) {
	t, err := fileSecret("sas.token_file", spec.TokenFile, o, parseSAS)
	if err != nil {
		return nil, err
	}
	return &sas{token: t, spec: spec}, nil
}

// Kind is KindSAS.
func (s *sas) Kind() Kind { return KindSAS }

// Close does nothing: there is no background work.
func (s *sas) Close() error { return nil }

// String names where the token comes from.
func (s *sas) String() string { return Spec{SAS: &s.spec}.String() }

// GoString is String.
func (s *sas) GoString() string { return s.String() }

// Inject removes the agent's Authorization and SAS parameters and adds the
// token's parameters to the query.
func (s *sas) Inject(_ context.Context, req Outgoing) (Mutation, error) {
	tok, err := s.token.get()
	if err != nil {
		return Mutation{}, err
	}
	q, err := parseQuery(req.RawQuery)
	if err != nil {
		return Mutation{}, errors.New("sas: " + err.Error())
	}
	return Mutation{Remove: agentCredentials(false), RemoveQuery: agentSAS(q), AddQuery: tok}, nil
}
