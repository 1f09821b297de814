package extproc

import (
	"encoding/json"

	"google.golang.org/genproto/googleapis/rpc/code"
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
	// CodeResponseWithheld: the upstream answered, but its response could
	// not be masked (a body the engine cannot read under a strict profile),
	// so it was withheld (502).
	CodeResponseWithheld = "response_withheld"
)

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
