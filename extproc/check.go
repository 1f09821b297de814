package extproc

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/xds"
)

// Headers an agent may send; every other incoming x-custos-* header is removed.
const (
	SessionHeader    = "x-custos-session"
	ApprovalIDHeader = "x-custos-approval-id"
)

// Check decides one request. It runs the stages in order (connection, then,
// as they land, identity, inspection, policy and grants) and either allows the
// request with its decision in dynamic metadata or denies it with the
// CONTRACT's JSON. An error from a stage that cannot decide is returned as a
// gRPC error, which Envoy turns into status_on_error (503) and never into an
// allow.
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	cfg := s.cfg.Load()
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	headers := httpReq.GetHeaders()
	d := decision{RequestID: newRequestID(), Method: httpReq.GetMethod()}

	conn, reply := resolveConnection(cfg, req.GetAttributes().GetContextExtensions(), httpReq.GetHost())
	if reply != nil {
		reply.RequestID = d.RequestID
		return reply.denied(d), nil
	}
	d.Connection = conn.Name
	d.ExtProc = req.GetAttributes().GetContextExtensions()[xds.ContextExtProc] == "on"
	d.Path = upstreamPath(conn, httpReq.GetHost(), httpReq.GetPath())

	sid, ok := sessionID("", "anonymous", headers[SessionHeader])
	if !ok {
		r := Reply{Status: 400, Code: CodeBadRequest, RequestID: d.RequestID,
			Message: SessionHeader + " must be 1 to 128 characters of letters, digits and . _ : -"}
		return r.denied(d), nil
	}
	d.SessionID = sid

	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			// Custos' request id replaces x-request-id, so that the upstream,
			// Envoy's access log and Envoy's own later replies all carry the
			// id Custos records, whatever the agent sent.
			Headers:              []*corev3.HeaderValueOption{setHeader("x-request-id", d.RequestID)},
			HeadersToRemove:      headersToRemove(conn, headers),
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{setHeader(RequestIDHeader, d.RequestID)},
		}},
		DynamicMetadata: d.metadata(),
	}, nil
}

// resolveConnection finds the request's connection: by the route's
// context_extensions on Custos' own routes, else by :authority (Istio).
func resolveConnection(cfg *config.Config, ext map[string]string, authority string) (config.Connection, *Reply) {
	if name, ok := ext[xds.ContextConnection]; ok {
		if c, ok := cfg.Connection(name); ok {
			return c, nil
		}
		return config.Connection{}, &Reply{Status: 403, Code: CodeForbidden,
			Message: fmt.Sprintf("connection %q is not configured", name)}
	}
	if c, ok := cfg.ConnectionForHost(authority); ok {
		return c, nil
	}
	return config.Connection{}, &Reply{Status: 403, Code: CodeForbidden,
		Message: "no configured connection serves this host"}
}

// upstreamPath is the path the upstream receives, without the query: the
// connection prefix stripped unless the request was routed by host, then the
// upstream URL's base path prepended. The connection manager has already
// normalised the path.
func upstreamPath(c config.Connection, authority, path string) string {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if !hostMatches(c, authority) {
		prefix := "/" + c.Name
		if path == prefix {
			path = "/"
		} else if strings.HasPrefix(path, prefix+"/") {
			path = path[len(prefix):]
		}
	}
	base := strings.TrimRight(c.UpstreamURL().Path, "/")
	return base + path
}

func hostMatches(c config.Connection, authority string) bool {
	host := authority
	if h, _, err := net.SplitHostPort(authority); err == nil {
		host = h
	}
	for _, h := range c.Hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// credentialHeaders carry the agent's own credentials: they never go
// upstream unless the connection says forward_token (upstream credentials
// belong to Custos).
var credentialHeaders = []string{"authorization", "proxy-authorization"}

// headersToRemove lists what Envoy removes before the request goes on: the
// incoming x-custos-* headers an agent may not set, and the agent's
// credentials unless the connection forwards them.
func headersToRemove(c config.Connection, headers map[string]string) []string {
	var out []string
	for k := range headers {
		if strings.HasPrefix(k, "x-custos-") && k != SessionHeader && k != ApprovalIDHeader {
			out = append(out, k)
		}
	}
	if !c.ForwardToken {
		for _, k := range credentialHeaders {
			if _, ok := headers[k]; ok {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// newRequestID is a random (version 4) UUID. Custos never adopts an id from
// the request: behind a sidecar or for requests Envoy deems internal, the
// agent could choose x-request-id and reuse another request's id.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// sessionID namespaces a session by principal: two agents naming the same
// session never share it. An agent that names no session gets its default one.
func sessionID(issuer, subject, supplied string) (string, bool) {
	if supplied == "" {
		supplied = "default"
	} else if !validToken(supplied) {
		return "", false
	}
	h := sha256.New()
	for _, part := range []string{issuer, subject, supplied} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32], true
}

func validToken(s string) bool {
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
