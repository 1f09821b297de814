package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/filters/identity"
)

// AuditorRole is the app role that may read any event's proof.
const AuditorRole = "auditor"

// ProofPath serves GET ?log=ID&index=N: one event, its inclusion proof and
// the signed checkpoint that covers it, for the principal the event is
// about or an auditor.
const ProofPath = "/v1/audit/proof"

func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("content-type", "application/json")
	w.Header().Set("cache-control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "message": msg})
}

// proof answers GET /v1/audit/proof. The caller is verified with the
// identity stage in force, as an agent is; the event is shown only to the
// principal it is about and to holders of the auditor role.
func (cp *ControlPlane) proof(w http.ResponseWriter, r *http.Request) {
	if cp.Audit == nil {
		apiError(w, http.StatusNotFound, "not_found", "this custos keeps no audit log (audit.signing_key_file)")
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("authorization"), "Bearer ")
	if !ok || tok == "" {
		w.Header().Set("www-authenticate", "Bearer")
		apiError(w, http.StatusUnauthorized, "unauthenticated", "token missing")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	pr, err := cp.Services.Pipeline().Identity().Verify(ctx, identity.Credentials{Bearer: tok})
	if err != nil {
		var ie *identity.Error
		if errors.As(err, &ie) {
			w.Header().Set("www-authenticate", "Bearer")
			apiError(w, http.StatusUnauthorized, "unauthenticated", "token "+ie.Check)
			return
		}
		apiError(w, http.StatusServiceUnavailable, "unavailable", "the identity stage could not decide")
		return
	}
	q := r.URL.Query()
	if id := q.Get("log"); id != "" && id != cp.Audit.ID() {
		apiError(w, http.StatusNotFound, "not_found", "this custos keeps log "+cp.Audit.ID())
		return
	}
	index, err := strconv.ParseInt(q.Get("index"), 10, 64)
	if err != nil || index < 0 || index >= cp.Audit.Size() {
		apiError(w, http.StatusNotFound, "not_found", "no event at that index")
		return
	}
	raw, err := cp.Audit.Read(index)
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "unavailable", "the event could not be read")
		return
	}
	ev, err := audit.DecodeEvent(raw)
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "unavailable", "the event could not be read")
		return
	}
	if ev.Actor.UID != pr.ID() && !slices.Contains(pr.Roles, AuditorRole) {
		apiError(w, http.StatusForbidden, "forbidden", "this event is about another principal; the auditor role reads every event")
		return
	}
	p, err := cp.Audit.Proof(ctx, index)
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "unavailable", "no signed checkpoint covers the event yet; try again")
		return
	}
	w.Header().Set("content-type", "application/json")
	w.Header().Set("cache-control", "no-store")
	_ = json.NewEncoder(w).Encode(p)
}
