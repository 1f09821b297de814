package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/custos-dev/custos/filters/identity"
)

// Paths the Handler serves; mount it on both.
const (
	// ListPath is GET /v1/approvals?status=STATE.
	ListPath = "/v1/approvals"
	// PathPrefix is /v1/approvals/{id}[/approve|/deny|/revoke|/wait].
	PathPrefix = "/v1/approvals/"
)

// Limits of the API.
const (
	// MaxBodyBytes bounds a vote's JSON body.
	MaxBodyBytes = 16 << 10
	// DefaultWait and MaxWait bound GET …/wait?timeout=.
	DefaultWait = 60 * time.Second
	MaxWait     = 5 * time.Minute
)

// Authenticator verifies an approver's (or agent's) bearer token; an
// *identity.Error is a refused token (401), any other error means it could
// not be decided (503).
type Authenticator func(ctx context.Context, bearer string) (identity.Principal, error)

// Handler serves the approvals API of CONTRACT.md.
type Handler struct {
	svc  *Service
	auth Authenticator
}

// NewHandler is the approvals API over svc, callers verified by auth.
func NewHandler(svc *Service, auth Authenticator) *Handler {
	return &Handler{svc: svc, auth: auth}
}

// view is an approval as the API shows it.
type view struct {
	Approval
	TTL string `json:"ttl"`
}

func viewOf(a Approval) view {
	if a.Votes == nil {
		a.Votes = []Vote{}
	}
	return view{Approval: a, TTL: a.TTL.String()}
}

// ServeHTTP routes one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("cache-control", "no-store")
	var id, op string
	switch {
	case r.URL.Path == ListPath:
	case strings.HasPrefix(r.URL.Path, PathPrefix):
		id, op, _ = strings.Cut(strings.TrimPrefix(r.URL.Path, PathPrefix), "/")
		if id == "" || strings.Contains(op, "/") {
			apiError(w, http.StatusNotFound, "not_found", "no such path")
			return
		}
	default:
		apiError(w, http.StatusNotFound, "not_found", "no such path")
		return
	}
	method := map[string]string{"": http.MethodGet, "wait": http.MethodGet,
		"approve": http.MethodPost, "deny": http.MethodPost, "revoke": http.MethodPost}
	want, ok := method[op]
	if !ok {
		apiError(w, http.StatusNotFound, "not_found", "no such path")
		return
	}
	if r.Method != want && !(want == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("allow", want)
		apiError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+want)
		return
	}
	pr, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	switch {
	case id == "":
		h.list(w, r, pr)
	case op == "":
		h.show(w, r, pr, id)
	case op == "wait":
		h.wait(w, r, pr, id)
	default:
		h.change(w, r, pr, id, op)
	}
}

func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (identity.Principal, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("authorization"), "Bearer ")
	if !ok || tok == "" {
		w.Header().Set("www-authenticate", "Bearer")
		apiError(w, http.StatusUnauthorized, "unauthenticated", "token missing")
		return identity.Principal{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	pr, err := h.auth(ctx, tok)
	if err != nil {
		var ie *identity.Error
		if errors.As(err, &ie) {
			w.Header().Set("www-authenticate", "Bearer")
			apiError(w, http.StatusUnauthorized, "unauthenticated", "token "+ie.Check)
			return identity.Principal{}, false
		}
		apiError(w, http.StatusServiceUnavailable, "unavailable", "the identity stage could not decide")
		return identity.Principal{}, false
	}
	return pr, true
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, pr identity.Principal) {
	state := r.URL.Query().Get("status")
	switch state {
	case "", StatePending, StateApproved, StateDenied, StateExpired, StateUsed, StateRevoked:
	default:
		apiError(w, http.StatusBadRequest, "bad_request", "status is one of pending, approved, denied, expired, used, revoked")
		return
	}
	all, err := h.svc.List(r.Context(), state)
	if err != nil {
		h.failed(w, err)
		return
	}
	out := []view{}
	for _, a := range all {
		if CanSee(&a, pr) {
			out = append(out, viewOf(a))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": out})
}

// visible returns approval id if pr may see it; to anyone else it does
// not exist (404), so ids cannot be probed.
func (h *Handler) visible(w http.ResponseWriter, r *http.Request, pr identity.Principal, id string) (Approval, bool) {
	a, err := h.svc.Get(r.Context(), id)
	if errors.Is(err, ErrNotFound) || err == nil && !CanSee(&a, pr) {
		apiError(w, http.StatusNotFound, "not_found", "no approval "+id+" that you may see")
		return Approval{}, false
	}
	if err != nil {
		h.failed(w, err)
		return Approval{}, false
	}
	return a, true
}

func (h *Handler) show(w http.ResponseWriter, r *http.Request, pr identity.Principal, id string) {
	if a, ok := h.visible(w, r, pr, id); ok {
		writeJSON(w, http.StatusOK, viewOf(a))
	}
}

func (h *Handler) wait(w http.ResponseWriter, r *http.Request, pr identity.Principal, id string) {
	timeout := DefaultWait
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			apiError(w, http.StatusBadRequest, "bad_request", "timeout is a duration such as 60s")
			return
		}
		timeout = min(d, MaxWait)
	}
	if _, ok := h.visible(w, r, pr, id); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	a, err := h.svc.Wait(ctx, id)
	if err != nil && ctx.Err() == nil {
		h.failed(w, err)
		return
	}
	if r.Context().Err() != nil {
		return // the caller left
	}
	writeJSON(w, http.StatusOK, viewOf(a))
}

func (h *Handler) change(w http.ResponseWriter, r *http.Request, pr identity.Principal, id, op string) {
	body, err := decodeBody(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"error": "request_too_large",
				"message": "the body is too large", "limit_bytes": MaxBodyBytes})
			return
		}
		apiError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	// A workload never votes, whatever the approval; whoever else may
	// not see the approval learns nothing of it, not even that it exists.
	if op != "revoke" && pr.Kind != identity.KindHuman {
		h.failed(w, ErrNotEligible)
		return
	}
	if _, ok := h.visible(w, r, pr, id); !ok {
		return
	}
	var a Approval
	switch op {
	case "approve":
		a, err = h.svc.Vote(r.Context(), id, pr, Approve, body.Comment)
	case "deny":
		a, err = h.svc.Vote(r.Context(), id, pr, Deny, body.Reason)
	case "revoke":
		a, err = h.svc.Revoke(r.Context(), id, pr, body.Reason)
	}
	if err != nil {
		h.failed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, viewOf(a))
}

// failed answers an error from the service: a refusal with its code, a
// missing approval with 404, anything else with 503.
func (h *Handler) failed(w http.ResponseWriter, err error) {
	var ref *Refusal
	switch {
	case errors.As(err, &ref):
		apiError(w, ref.Status, ref.Code, ref.Message)
	case errors.Is(err, ErrNotFound):
		apiError(w, http.StatusNotFound, "not_found", "no such approval")
	default:
		h.svc.log.Error("approvals API", "err", err)
		apiError(w, http.StatusServiceUnavailable, "unavailable", "the approval store could not answer")
	}
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("content-type", "application/json")
	w.Header().Set("cache-control", "no-store")
	w.Header().Set("x-content-type-options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
