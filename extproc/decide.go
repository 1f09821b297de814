package extproc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/credentials"
	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/inspect"
	"github.com/custos-dev/custos/filters/mask"
	"github.com/custos-dev/custos/filters/policy"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/filters/request"
	"github.com/custos-dev/custos/names"
)

// outcome is what the pipeline decided: a verdict for ext_proc and, for a
// request Check answers itself, the reply.
type outcome struct {
	v     Verdict
	reply *Reply
	// conn is the resolved connection (nil when none served the request).
	conn *config.Connection
	// event is the decision as the record stage gets it.
	event record.Event
	// evidence is where the decision was recorded ("" when the record
	// stage gives no receipt).
	evidence string
	// mutation is the connection's upstream credential for an allowed
	// request (nil for none).
	mutation *credentials.Mutation
	// policySource is where the decision came from (evaluated, cache),
	// "" when policy was not reached.
	policySource string
}

// deny makes o a denial with r.
func (o *outcome) deny(r Reply) *outcome {
	r.RequestID = o.v.RequestID
	o.reply = &r
	o.v.Denied = true
	return o
}

// decide runs the stages in their fixed order (identity → inspect → policy →
// grant lookup) and returns what Check answers. A stage that panics (a
// parser on hostile input) answers this request 503 and the process lives on.
func (p *Pipeline) decide(ctx context.Context, in checkInput) (o *outcome) {
	o = &outcome{v: Verdict{RequestID: in.req.ID, Method: in.req.Method}}
	defer func() {
		if r := recover(); r != nil {
			p.logPanic(o.v.RequestID, r)
			o.v.Hold = nil
			o.deny(Reply{Status: 503, Code: CodeUnavailable, Message: "a stage failed; nothing was forwarded"})
		}
	}()
	return p.stagesFor(ctx, in, o)
}

func (p *Pipeline) logPanic(requestID string, r any) {
	if l := p.logger(); l != nil {
		// The panic's value is not logged: a parser's message may quote the
		// request it choked on (a card number in a WHERE clause). Its type
		// and the stack say where it happened.
		l.Error("stage panic", "request_id", requestID, "panic_type", fmt.Sprintf("%T", r), "stack", string(debug.Stack()))
	}
}

func (p *Pipeline) stagesFor(ctx context.Context, in checkInput, o *outcome) *outcome {
	st := p.stages
	rt, name, ok := p.conns.routeFor(in.ext, in.req.Host)
	if !ok {
		if name != "" {
			return o.deny(Reply{Status: 403, Code: CodeForbidden, Message: fmt.Sprintf("connection %q is not configured", name)})
		}
		return o.deny(Reply{Status: 403, Code: CodeForbidden, Message: "no configured connection serves this host"})
	}
	o.conn = rt.conn
	req := in.req
	// X_Custos_Principal and Proxy_Authorization reach CGI-style upstreams
	// as the real headers. Refused here rather than by the connection
	// manager (headers_with_underscores_action REJECT_REQUEST), whose codec
	// error, with ext_proc on the listener, resets the connection without a
	// reply; here the agent gets JSON with a request id and the attempt is
	// recorded.
	if k := underscoreHeader(in.rawHeader); k != "" {
		o.v.Connection, o.v.Path = rt.conn.Name, req.OriginalPath
		return o.deny(Reply{Status: 400, Code: CodeBadRequest,
			Message: "header names with underscores are refused: an upstream may read " + k + " as " + strings.ReplaceAll(k, "_", "-")})
	}
	// Azure Storage defines %2F in a blob name as the name's own slash (its
	// SDKs send virtual directories so), and the container is always the
	// first segment: azure connections take it as sent.
	if hasEscapedSlash(req.OriginalPath) && rt.conn.Kind != config.KindAzure {
		o.v.Connection, o.v.Path = rt.conn.Name, req.OriginalPath
		return o.deny(Reply{Status: 400, Code: CodeBadRequest,
			Message: "the path holds an escaped slash (%2F or %5C), which an upstream may read as a separator; refused"})
	}
	req.Connection = *rt.conn
	req.Path = rt.upstreamPath(req.OriginalPath)
	o.v.Connection, o.v.Path = rt.conn.Name, req.Path
	o.v.ExtProc = in.ext[names.ContextExtProc] == "on"

	// identity: a token, or, on a connection that takes them, a client
	// certificate the listener verified (a second way in, for policy
	// exactly like a token's principal)
	cc := rt.conn.ClientCert
	if cc == config.ClientCertRequired && in.creds.PeerPrincipal == "" {
		o.event.Kind = record.AuthFailed
		o.event.Claimed = &record.Claimed{}
		return o.deny(Reply{Status: 401, Code: CodeUnauthenticated, Message: "client certificate missing"})
	}
	var pr identity.Principal
	var err error
	if in.creds.Bearer == "" && in.creds.PeerPrincipal != "" && (cc == config.ClientCertOptional || cc == config.ClientCertRequired) {
		pr = identity.PeerPrincipal(in.creds.PeerPrincipal)
	} else {
		pr, err = st.Identity.Verify(ctx, in.creds)
	}
	if err != nil {
		if identity.IsUnauthenticated(err) {
			var ie *identity.Error
			errors.As(err, &ie)
			o.event.Kind = record.AuthFailed
			o.event.Claimed = &record.Claimed{Issuer: ie.Claimed.Issuer, Subject: ie.Claimed.Subject, KeyID: ie.Claimed.KeyID}
			return o.deny(Reply{Status: 401, Code: CodeUnauthenticated, Message: "token " + ie.Check})
		}
		return o.unavailable("identity", err)
	}
	o.v.Principal, o.v.Groups = pr.ID(), pr.Groups
	o.event.PrincipalKind, o.event.Roles, o.event.App = pr.Kind, pr.Roles, pr.App
	o.event.Groups = pr.Groups
	if len(pr.GroupNames) == len(pr.Groups) && len(pr.Groups) > 0 {
		o.event.Groups = pr.GroupNames
	}
	supplied := req.Session
	if supplied == "" {
		supplied = pr.Session // derived from the token
	}
	sid, session, ok := sessionID(pr.Issuer, pr.Subject, supplied)
	if !ok || in.emptySession {
		return o.deny(Reply{Status: 400, Code: CodeBadRequest,
			Message: names.SessionHeader + " must be 1 to 128 characters of letters, digits and . _ : -"})
	}
	o.v.SessionID, o.v.Session = sid, session

	// inspect
	act, err := st.Inspect.Inspect(ctx, req)
	if err != nil {
		return o.unavailable("inspect", err)
	}
	o.event.Action, o.event.Risk, o.event.Summary = act.Kind, string(act.Risk), act.Summary

	// grants the agent names are offered to policy
	// The fingerprint hashes the whole body: computed once, and only for a
	// request that names a grant or needs an approval.
	fp := ""
	fingerprint := func() string {
		if fp == "" {
			fp = approval.Fingerprint(req)
		}
		return fp
	}
	var grants []approval.Grant
	if req.ApprovalID != "" {
		if grants, err = st.Grants.Find(ctx, approval.Lookup{Requester: pr, Connection: rt.conn.Name,
			ApprovalID: req.ApprovalID, Fingerprint: fingerprint(), Risk: string(act.Risk)}); err != nil {
			return o.unavailable("grant lookup", err)
		}
	}

	// policy
	in2 := policy.Input{Principal: pr, Request: req, Action: act, Time: time.Now()}
	for _, g := range grants {
		in2.Grants = append(in2.Grants, policy.Grant{ID: g.ID, Scope: g.Scope, Expires: g.Expires})
	}
	dec, err := st.Policy.Decide(ctx, in2)
	if err != nil {
		return o.unavailable("policy", err)
	}
	if dec.ID == "" {
		dec.ID = newRequestID()
	}
	o.policySource = "evaluated"
	if dec.Cached {
		o.policySource = "cache"
	}
	o.v.DecisionID, o.v.Revision, o.v.Reasons = dec.ID, dec.Revision, dec.Reasons
	profile := mask.NewProfile(rt.conn.Masking, dec.MaskProfile)
	o.v.MaskProfile = profile.Names

	// grant lookup: an approval asked for and not granted starts the flow,
	// whatever allow says; with a grant, allow decides. In shadow mode the
	// request goes on and the record says what enforcing would have done.
	shadow := rt.conn.PolicyMode == config.PolicyModeShadow
	if dec.Approval != nil {
		// A grant counts only for the rule that asks for approval now.
		grants = slices.DeleteFunc(grants, func(g approval.Grant) bool { return g.Rule != "" && g.Rule != dec.Approval.Rule })
	}
	switch {
	case dec.Approval != nil && len(grants) == 0 && shadow:
		o.event.Shadow = "approval_required: rule " + dec.Approval.Rule
	case dec.Approval != nil && len(grants) == 0:
		return p.approvalFlow(ctx, o, pr, req, act, fingerprint(), dec)
	case !dec.Allow && shadow:
		o.event.Shadow = "forbidden"
	case !dec.Allow:
		r := Reply{Status: 403, Code: CodeForbidden, Message: "denied by policy",
			Extra: map[string]any{"reasons": nonNil(dec.Reasons), "decision_id": dec.ID}}
		return o.deny(r)
	}

	// masking: refused before the upstream is reached when it cannot be done
	if !profile.Empty() {
		if !o.v.ExtProc {
			return o.deny(Reply{Status: 503, Code: CodeUnavailable,
				Message: "this connection is masked and this route does not pass responses through Custos; nothing was forwarded"})
		}
		if err := mask.Masks(st.Mask, profile); err != nil {
			return o.unavailable("mask", err)
		}
	}
	return o
}

// approvalFlow opens an approval request: held in Process on routes with
// ext_proc in hold mode, otherwise the agent is told approval_required.
func (p *Pipeline) approvalFlow(ctx context.Context, o *outcome, pr identity.Principal, req *request.Request, act inspect.Action, fp string, dec policy.Decision) *outcome {
	a := dec.Approval
	pend, err := p.stages.Grants.Request(ctx, approval.Request{
		Requester: pr, Connection: req.Connection.Name, Summary: act.Summary, Fingerprint: fp, Rule: a.Rule,
		Reasons: dec.Reasons, Approvers: a.Approvers, MinApprovals: a.MinApprovals, Scope: a.Scope,
		Risk: string(act.Risk), TTL: a.TTL, RequestID: req.ID, Method: req.Method, Path: req.Path,
		Expires: time.Now().Add(p.cfg.Approvals.Expiry),
	})
	if errors.Is(err, approval.ErrUnavailable) {
		// No approval store: the request needs an approval nobody can give
		// here. The agent is told so, and nothing is forwarded.
		return o.deny(Reply{Status: 403, Code: CodeApprovalRequired,
			Message: "this request needs an approval (rule " + a.Rule + ", approvers " + strings.Join(a.Approvers, ", ") + "), and no approval store is configured here",
			Extra:   map[string]any{"reasons": nonNil(dec.Reasons), "decision_id": dec.ID}})
	}
	if err != nil {
		return o.unavailable("approval", err)
	}
	if o.v.ExtProc && p.cfg.Approvals.Mode == config.ApprovalModeHold {
		o.v.Hold = &Hold{ApprovalID: pend.ID, Timeout: p.cfg.Approvals.Timeout}
		return o
	}
	return o.deny(Reply{Status: 403, Code: CodeApprovalRequired, Message: "this request needs an approval; retry with " + names.ApprovalIDHeader + " once it is approved",
		Extra: p.approvalLinks(pend.ID, map[string]any{"approval_id": pend.ID, "status": approval.StatePending})})
}

// unavailable denies with 503: the stage could not decide.
func (o *outcome) unavailable(stage string, err error) *outcome {
	o.event.Detail = stage + ": " + err.Error()
	return o.deny(Reply{Status: 503, Code: CodeUnavailable, Message: "the " + stage + " stage could not decide; nothing was forwarded"})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sessionID namespaces a session by principal: two agents naming the same
// session never share it. An agent that names no session gets "default".
func sessionID(issuer, subject, supplied string) (id, name string, ok bool) {
	if supplied == "" {
		supplied = "default"
	} else if !identity.ValidSessionName(supplied) {
		return "", "", false
	}
	h := sha256.New()
	for _, part := range []string{issuer, subject, supplied} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32], supplied, true
}

// hasEscapedSlash reports whether path holds %2F or %5C in either case.
func hasEscapedSlash(path string) bool {
	for i := 0; i+2 < len(path); i++ {
		if path[i] == '%' && ((path[i+1] == '2' && (path[i+2] == 'f' || path[i+2] == 'F')) ||
			(path[i+1] == '5' && (path[i+2] == 'c' || path[i+2] == 'C'))) {
			return true
		}
	}
	return false
}

// underscoreHeader returns the first header name (in sorted order) that
// holds an underscore, "" if none does.
func underscoreHeader(h map[string]string) string {
	found := ""
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 && (found == "" || k < found) {
			found = k
		}
	}
	return found
}
