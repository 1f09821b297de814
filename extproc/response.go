package extproc

import (
	"slices"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/names"
)

// checkResponse turns the pipeline's outcome into what Envoy applies: an
// allow with the verdict in dynamic metadata, or Custos' own reply.
func checkResponse(o *outcome, rawHeaders map[string]string) *authv3.CheckResponse {
	if o.reply != nil {
		r := o.reply.denied(o.v)
		if o.evidence != "" {
			d := r.GetDeniedResponse()
			d.Headers = append(d.Headers, setHeader(names.EvidenceHeader, o.evidence))
		}
		return r
	}
	reqHeaders, remove := requestHeaderMutations(o, rawHeaders)
	respHeaders := []*corev3.HeaderValueOption{setHeader(names.RequestIDHeader, o.v.RequestID)}
	if o.evidence != "" {
		respHeaders = append(respHeaders, setHeader(names.EvidenceHeader, o.evidence))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			// Custos' request id replaces x-request-id, so that the upstream,
			// Envoy's access log and Envoy's own later replies all carry the
			// id Custos records, whatever the agent sent.
			Headers:              reqHeaders,
			HeadersToRemove:      remove,
			ResponseHeadersToAdd: respHeaders,
		}},
		DynamicMetadata: o.v.Struct(),
	}
}

// requestHeaderMutations lists the request headers Check tells Envoy to set
// and to remove on an allowed request (before any upstream credential): the
// request id, the headers an agent may not send on, and, under masking, the
// Range and Accept-Encoding pinning.
func requestHeaderMutations(o *outcome, rawHeaders map[string]string) (set []*corev3.HeaderValueOption, remove []string) {
	set = []*corev3.HeaderValueOption{setHeader(names.EnvoyRequestIDHeader, o.v.RequestID)}
	remove = headersToRemove(o.conn, rawHeaders)
	if len(o.v.MaskProfile) > 0 {
		// Masking cannot be sidestepped: no byte ranges (a range cuts values
		// apart), and only encodings the engine decodes and re-encodes.
		for _, k := range []string{"range", "if-range"} {
			if _, ok := rawHeaders[k]; ok {
				remove = append(remove, k)
			}
		}
		sort.Strings(remove)
		if ae, ok := rawHeaders["accept-encoding"]; ok {
			set = append(set, setHeader("accept-encoding", pinEncodings(ae)))
		}
	}
	return set, remove
}

// pinEncodings keeps of an agent's Accept-Encoding only the encodings the
// masking engine decodes and re-encodes (gzip, deflate), and identity when
// none of those is left: a compressed body the engine could not read would
// otherwise reach the agent unmasked (or be refused).
func pinEncodings(ae string) string {
	var keep []string
	for _, part := range strings.Split(ae, ",") {
		tok := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch tok {
		case "gzip", "x-gzip", "deflate":
			if q := strings.SplitN(part, ";", 2); len(q) == 2 && strings.ReplaceAll(strings.TrimSpace(q[1]), " ", "") == "q=0" {
				continue
			}
			if !slices.Contains(keep, tok) {
				keep = append(keep, tok)
			}
		}
	}
	if len(keep) == 0 {
		return "identity"
	}
	return strings.Join(keep, ", ")
}

const envoyHeaderPrefix = "x-envoy-"

// credentialHeaders carry the agent's own credentials: they never go
// upstream unless the connection says forward_token (upstream credentials
// belong to Custos).
var credentialHeaders = []string{"authorization", "proxy-authorization"}

// headersToRemove lists what Envoy removes before the request goes on: the
// incoming x-custos-* headers an agent may not set, every incoming x-envoy-*
// header (use_remote_address strips only Envoy's internal list; the rest,
// x-envoy-original-path among them, would reach the upstream), and the
// agent's credentials unless the connection forwards them.
func headersToRemove(c *config.Connection, headers map[string]string) []string {
	var out []string
	for k := range headers {
		k = strings.ToLower(k)
		switch {
		case strings.HasPrefix(k, names.CustosHeaderPrefix) && k != names.SessionHeader && k != names.ApprovalIDHeader:
			out = append(out, k)
		case strings.HasPrefix(k, envoyHeaderPrefix):
			out = append(out, k)
		}
	}
	if c == nil || !c.ForwardToken {
		for _, k := range credentialHeaders {
			if _, ok := headers[k]; ok {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// denied turns r into the CheckResponse that makes Envoy answer with it,
// with v's metadata marked as a denial (Envoy stores a denial's metadata
// too; the listener's local reply mappers skip marked replies).
func (r Reply) denied(v Verdict) *authv3.CheckResponse {
	v.Denied = true
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode(r.Status)), Message: r.Code},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)},
			Headers: []*corev3.HeaderValueOption{
				setHeader("content-type", "application/json"),
				setHeader(names.RequestIDHeader, r.RequestID),
			},
			Body: string(r.Body()),
		}},
		DynamicMetadata: v.Struct(),
	}
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
