package extproc

import (
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/request"
	"github.com/custos-dev/custos/names"
)

// checkInput is a CheckRequest as the pipeline reads it: the stages'
// request (its connection and upstream path still to be resolved), the
// credentials for the identity stage, the route's context and the raw
// header names (for what Envoy must remove).
type checkInput struct {
	req       *request.Request
	creds     identity.Credentials
	ext       map[string]string
	rawHeader map[string]string
	// emptySession is set when x-custos-session was sent empty: refused,
	// never taken for "no session" and forwarded.
	emptySession bool
}

// requestFrom turns Envoy's CheckRequest into the stages' request. The path
// Envoy sends is the normalised one, with its query.
func requestFrom(cr *authv3.CheckRequest, id string) checkInput {
	attrs := cr.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	in := checkInput{ext: attrs.GetContextExtensions(), rawHeader: h.GetHeaders()}
	path, query, _ := strings.Cut(h.GetPath(), "?")
	r := &request.Request{
		ID:           id,
		Method:       h.GetMethod(),
		Host:         h.GetHost(),
		OriginalPath: path,
		RawQuery:     query,
		BodyBytes:    h.GetSize(),
		Headers:      make(map[string]string, len(h.GetHeaders())),
	}
	if b := h.GetRawBody(); len(b) > 0 {
		r.Body = b
	} else if s := h.GetBody(); s != "" {
		r.Body = []byte(s)
	}
	for k, v := range h.GetHeaders() {
		k = strings.ToLower(k)
		switch {
		case strings.HasPrefix(k, ":"):
		case k == "authorization":
			if tok, ok := bearer(v); ok {
				in.creds.Bearer = tok
			}
		case request.IsCredentialHeader(k):
		case k == names.SessionHeader:
			r.Session = v
			in.emptySession = v == ""
		case k == names.ApprovalIDHeader:
			r.ApprovalID = v
			r.Headers[k] = v
		default:
			r.Headers[k] = v
		}
	}
	in.creds.PeerPrincipal = attrs.GetSource().GetPrincipal()
	in.req = r
	return in
}

// bearer returns the token of an "Authorization: Bearer TOKEN" value; the
// scheme is case-insensitive (RFC 9110).
func bearer(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
