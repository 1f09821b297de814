package extproc

import (
	"encoding/json"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// Error codes of the agent-facing contract (CONTRACT.md, "What an agent sees").
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthenticated  = "unauthenticated"
	CodeForbidden        = "forbidden"
	CodeApprovalRequired = "approval_required"
	CodeApprovalDenied   = "approval_denied"
	CodeTooLarge         = "request_too_large"
	CodeUnavailable      = "unavailable"
)

// RequestIDHeader is the response header that carries the request id.
const RequestIDHeader = "x-custos-request-id"

// Reply is a response Custos itself produces for an agent: JSON with a stable
// error code and the request id.
type Reply struct {
	Status    int
	Code      string
	Message   string
	RequestID string
	// Extra holds the code's additional fields (reasons, approval_id, …).
	Extra map[string]any
}

// Body is the reply's JSON body.
func (r Reply) Body() []byte {
	m := make(map[string]any, len(r.Extra)+3)
	for k, v := range r.Extra {
		m[k] = v
	}
	m["error"] = r.Code
	m["request_id"] = r.RequestID
	if r.Message != "" {
		m["message"] = r.Message
	}
	b, err := json.Marshal(m)
	if err != nil {
		// Extra holds only JSON-safe values built by Custos; fall back to the
		// fixed fields rather than answer without a body.
		b, _ = json.Marshal(map[string]string{"error": r.Code, "request_id": r.RequestID})
	}
	return b
}

// grpcCode maps an HTTP status of a denial to the gRPC code Envoy logs.
func grpcCode(status int) code.Code {
	switch status {
	case 400:
		return code.Code_INVALID_ARGUMENT
	case 401:
		return code.Code_UNAUTHENTICATED
	case 413:
		return code.Code_RESOURCE_EXHAUSTED
	case 503:
		return code.Code_UNAVAILABLE
	}
	return code.Code_PERMISSION_DENIED
}

// denied turns r into the CheckResponse that makes Envoy answer with it,
// with d's metadata marked as a denial (Envoy stores a denial's metadata
// too; the listener's local reply mappers skip marked replies).
func (r Reply) denied(d decision) *authv3.CheckResponse {
	d.Denied = true
	md := d.metadata()
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode(r.Status)), Message: r.Code},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)},
			Headers: []*corev3.HeaderValueOption{
				setHeader("content-type", "application/json"),
				setHeader(RequestIDHeader, r.RequestID),
			},
			Body: string(r.Body()),
		}},
		DynamicMetadata: md,
	}
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
