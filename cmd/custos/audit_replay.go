package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-dev/custos/audit"
)

// timeLayout is RFC 3339 with milliseconds, for text a person reads (JSON
// carries full RFC 3339 nanosecond times).
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func newAuditReplayCmd(g *globals) *cobra.Command {
	var (
		dir, sessionArg, principal string
		asJSON                     bool
	)
	cmd := &cobra.Command{
		Use:   "replay --dir DIR --session ID [--principal ISSUER/SUBJECT] [--json]",
		Short: "Show one session as a timeline: requests, decisions, approvals, responses, masking",
		Long: `Show one agent session from the audit log, request by request, in the order
they happened: the method, path and connection; the decision and its
reasons; approvals, who voted and how they ended; the response status and
what was masked (counts per entity type, never a value); aborted exchanges
and failed authentications. Each line ends with the event's log index.

--session is the custos.session_id or the session name (x-custos-session, or
the one derived from the token). A name that several principals used is
refused with their list: add --principal ISSUER/SUBJECT.

--json prints the same timeline for programs. The log is only read; this does
not verify it (see ` + "`custos audit verify`" + `).`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if dir == "" {
				return usageError{errors.New("--dir DIR is required (the audit.dir)")}
			}
			if sessionArg == "" {
				return usageError{errors.New("--session ID is required (a custos.session_id or a session name)")}
			}
			r, err := audit.OpenReader(nil, dir)
			if err != nil {
				return err
			}
			sel, err := selectEvents(r, selection{session: sessionArg, principal: principal})
			if err != nil {
				return err
			}
			s := buildSessions(r.ID(), sel.events)[0]
			if asJSON {
				return writeIndentedJSON(g.stdout, s)
			}
			writeTimeline(g.stdout, s)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the log directory (audit.dir)")
	cmd.Flags().StringVar(&sessionArg, "session", "", "the session: its custos.session_id or its name")
	cmd.Flags().StringVar(&principal, "principal", "", "the principal (ISSUER/SUBJECT) whose session of that name to show")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return cmd
}

// loggedEvent is an event read from the log with its exact bytes (what a
// proof is built from).
type loggedEvent struct {
	audit.Event
	raw []byte
}

// selection says which events to read: one session (by id or by name and
// principal), or every session in [from, to).
type selection struct {
	session, principal string
	from, to           time.Time
}

// selected is what one pass over the log found.
type selected struct {
	events []loggedEvent
	// changes are the policy and configuration loads in the period.
	changes []loggedEvent
	// size is how many events the log holds.
	size int64
}

// requestKinds are the kinds an agent's own request produces: their actor
// is the session's principal.
var requestKinds = map[audit.Kind]bool{
	audit.AuthFailed: true, audit.Decision: true, audit.ApprovalRequested: true,
	audit.Response: true, audit.Aborted: true,
}

// selectEvents reads the log once and returns the events selected, in index
// order. For a session, approval votes and resolutions of an approval the
// session requested are included whatever session they name (an approver
// acts outside the agent's session).
func selectEvents(r *audit.Reader, q selection) (*selected, error) {
	byTime := q.session == ""
	var (
		out       selected
		byID      []loggedEvent
		byName    = map[string][]loggedEvent{} // session id → events
		owner     = map[string]string{}        // session id → principal
		approvals []loggedEvent
	)
	err := r.Scan(0, func(idx int64, rec []byte) error {
		out.size = idx + 1
		e, err := audit.DecodeEvent(rec)
		if err != nil {
			return fmt.Errorf("log %s: index %d is not a valid event (run `custos audit verify`): %w", r.ID(), idx, err)
		}
		le := loggedEvent{Event: e, raw: append([]byte(nil), rec...)}
		if byTime {
			if e.Time.Before(q.from) || !e.Time.Before(q.to) {
				return nil
			}
			switch {
			case e.Kind == audit.PolicyChanged || e.Kind == audit.ConfigChanged:
				out.changes = append(out.changes, le)
			case e.SessionID != "" || e.RequestID != "" || e.Approval != nil:
				out.events = append(out.events, le)
			}
			return nil
		}
		if e.SessionID != "" && requestKinds[e.Kind] && owner[e.SessionID] == "" {
			owner[e.SessionID] = e.Actor.UID
		}
		switch {
		case e.SessionID == q.session:
			byID = append(byID, le)
		case e.Session == q.session:
			byName[e.SessionID] = append(byName[e.SessionID], le)
		case e.Approval != nil && (e.Kind == audit.ApprovalVoted || e.Kind == audit.ApprovalResolved):
			approvals = append(approvals, le)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if byTime {
		if len(out.events) == 0 && len(out.changes) == 0 {
			return nil, fmt.Errorf("log %s holds no event from %s to %s (%d events in all)", r.ID(), q.from.Format(time.RFC3339), q.to.Format(time.RFC3339), out.size)
		}
		return &out, nil
	}

	var evs []loggedEvent
	switch {
	case len(byID) > 0:
		evs = byID
		if p := owner[q.session]; q.principal != "" && p != q.principal {
			return nil, fmt.Errorf("session %s is %s's, not %s's", q.session, p, q.principal)
		}
	case len(byName) > 0:
		var ids []string
		for id := range byName {
			if q.principal == "" || owner[id] == q.principal {
				ids = append(ids, id)
			}
		}
		switch {
		case len(ids) == 0:
			return nil, fmt.Errorf("log %s has no session %q of principal %s (its principals: %s)", r.ID(), q.session, q.principal, strings.Join(principalsOf(byName, owner), ", "))
		case len(ids) > 1:
			return nil, fmt.Errorf("session name %q was used by several principals (%s): add --principal ISSUER/SUBJECT", q.session, strings.Join(principalsOf(byName, owner), ", "))
		}
		evs = byName[ids[0]]
	default:
		return nil, fmt.Errorf("log %s has no session %q (by custos.session_id or name) among its %d events", r.ID(), q.session, out.size)
	}

	asked := map[string]bool{}
	for _, e := range evs {
		if e.Kind == audit.ApprovalRequested && e.Approval != nil {
			asked[e.Approval.ID] = true
		}
	}
	for _, e := range approvals {
		if asked[e.Approval.ID] {
			evs = append(evs, e)
		}
	}
	slices.SortFunc(evs, func(a, b loggedEvent) int { return cmpInt64(a.Index, b.Index) })
	out.events = evs
	return &out, nil
}

func principalsOf(byName map[string][]loggedEvent, owner map[string]string) []string {
	seen := map[string]bool{}
	for id := range byName {
		seen[orDash(owner[id])] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// sessionView is one session: what replay prints and report organises.
type sessionView struct {
	LogID      string          `json:"log_id"`
	SessionID  string          `json:"session_id"`
	Session    string          `json:"session"`
	Principals []principalView `json:"principals"`
	// First and Last are the indexes of the session's first and last events.
	First    int64         `json:"first_index"`
	Last     int64         `json:"last_index"`
	Requests []requestView `json:"requests"`

	events []loggedEvent
}

// principalView is who made requests, as the events recorded them.
type principalView struct {
	// UID is ISSUER/SUBJECT.
	UID     string   `json:"uid"`
	Issuer  string   `json:"issuer"`
	Subject string   `json:"subject"`
	Kind    string   `json:"kind,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	Roles   []string `json:"roles,omitempty"`
	App     string   `json:"app,omitempty"`
}

// requestView is one request and everything recorded about it.
type requestView struct {
	RequestID  string    `json:"request_id"`
	Time       time.Time `json:"time"`
	Principal  string    `json:"principal,omitempty"`
	Method     string    `json:"method,omitempty"`
	Path       string    `json:"path,omitempty"`
	Connection string    `json:"connection,omitempty"`
	// Outcome is one of allowed, blocked, held, approved, denied, expired,
	// revoked, auth_failed, aborted, in_progress.
	Outcome    string         `json:"outcome"`
	Action     *audit.Action  `json:"action,omitempty"`
	Decision   *decisionView  `json:"decision,omitempty"`
	Approvals  []approvalView `json:"approvals,omitempty"`
	Status     int            `json:"status,omitempty"`
	Masked     map[string]int `json:"masked,omitempty"`
	Profile    string         `json:"mask_profile,omitempty"`
	BodySHA256 string         `json:"body_sha256,omitempty"`
	AuthFailed string         `json:"auth_failed,omitempty"`
	Aborted    string         `json:"aborted,omitempty"`
	Events     []eventRef     `json:"events"`
}

type decisionView struct {
	ID             string   `json:"id"`
	Allow          bool     `json:"allow"`
	Reasons        []string `json:"reasons"`
	PolicyRevision string   `json:"policy_revision"`
	Shadow         bool     `json:"shadow,omitempty"`
}

type approvalView struct {
	ID        string     `json:"id"`
	Rule      string     `json:"rule,omitempty"`
	Approvers []string   `json:"approvers,omitempty"`
	State     string     `json:"state"`
	Votes     []voteView `json:"votes,omitempty"`
}

type voteView struct {
	Voter string    `json:"voter"`
	Vote  string    `json:"vote"`
	Time  time.Time `json:"time"`
	Index int64     `json:"index"`
}

// eventRef is one event of a request, by its position in the log.
type eventRef struct {
	Index int64     `json:"index"`
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"`
	// Text is the timeline line for the event.
	Text string `json:"text"`
}

// buildSessions groups events (in index order) by session, and each
// session's events by request.
func buildSessions(logID string, evs []loggedEvent) []*sessionView {
	var out []*sessionView
	byID := map[string]*sessionView{}
	approvalOwner := map[string]*sessionView{}
	for _, e := range evs {
		key := e.SessionID
		if e.Approval != nil && (e.Kind == audit.ApprovalVoted || e.Kind == audit.ApprovalResolved) {
			if s := approvalOwner[e.Approval.ID]; s != nil {
				key = s.SessionID
			}
		}
		s := byID[key]
		if s == nil {
			s = &sessionView{LogID: logID, SessionID: key, Session: e.Session, First: e.Index}
			byID[key] = s
			out = append(out, s)
		}
		if e.Kind == audit.ApprovalRequested && e.Approval != nil {
			approvalOwner[e.Approval.ID] = s
		}
		s.events = append(s.events, e)
		s.Last = e.Index
	}
	for _, s := range out {
		s.build()
	}
	return out
}

func (s *sessionView) build() {
	reqs := map[string]*requestView{}
	var order []*requestView
	approvalReq := map[string]*requestView{}
	principals := map[string]*principalView{}
	var porder []*principalView
	for _, e := range s.events {
		if requestKinds[e.Kind] && e.Actor.UID != "" {
			p := principals[e.Actor.UID]
			if p == nil {
				p = &principalView{UID: e.Actor.UID}
				p.Issuer, p.Subject = splitPrincipal(e.Actor.UID)
				principals[e.Actor.UID] = p
				porder = append(porder, p)
			}
			p.Kind = cmpOr(p.Kind, e.Actor.Type)
			p.App = cmpOr(p.App, e.Actor.App)
			p.Groups = union(p.Groups, e.Actor.Groups)
			p.Roles = union(p.Roles, e.Actor.Roles)
		}
		// Votes and resolutions belong to the request that asked for the
		// approval, whatever request id they carry.
		var rv *requestView
		if e.Approval != nil && e.Kind != audit.ApprovalRequested {
			rv = approvalReq[e.Approval.ID]
		}
		key := e.RequestID
		if key == "" {
			key = fmt.Sprintf("#%d", e.Index)
		}
		if rv == nil {
			rv = reqs[key]
		}
		if rv == nil {
			rv = &requestView{RequestID: e.RequestID, Time: e.Time}
			reqs[key] = rv
			order = append(order, rv)
		}
		if e.Approval != nil && e.Kind == audit.ApprovalRequested {
			approvalReq[e.Approval.ID] = rv
		}
		rv.add(e)
	}
	s.Requests = make([]requestView, len(order))
	for i, rv := range order {
		rv.settle()
		s.Requests[i] = *rv
	}
	s.Principals = make([]principalView, len(porder))
	for i, p := range porder {
		s.Principals[i] = *p
	}
}

// add folds one event into the request.
func (rv *requestView) add(e loggedEvent) {
	if rv.Principal == "" && requestKinds[e.Kind] {
		rv.Principal = e.Actor.UID
	}
	if e.Request != nil && rv.Method == "" {
		rv.Method, rv.Path = e.Request.Method, e.Request.Path
	}
	rv.Connection = cmpOr(rv.Connection, e.Connection)
	var text string
	switch e.Kind {
	case audit.AuthFailed:
		rv.AuthFailed = cmpOr(e.Detail, "credentials did not verify")
		text = "authentication failed: " + rv.AuthFailed
	case audit.Decision:
		if d := e.Decision; d != nil {
			rv.Decision = &decisionView{ID: d.ID, Allow: d.Allow, Reasons: d.Reasons, PolicyRevision: d.PolicyRevision, Shadow: d.Shadow}
			if rv.Decision.Reasons == nil {
				rv.Decision.Reasons = []string{}
			}
			verdict := "allowed"
			if !d.Allow {
				verdict = "denied"
			}
			if d.Shadow {
				verdict += " (shadow mode: not enforced)"
			}
			text = fmt.Sprintf("decision %s", verdict)
			if len(d.Reasons) > 0 {
				text += ": " + strings.Join(d.Reasons, "; ")
			}
			text += fmt.Sprintf(" (policy %s, decision %s)", orDash(d.PolicyRevision), orDash(d.ID))
		}
		if e.Action != nil {
			rv.Action = e.Action
		}
		if e.Response != nil {
			rv.Status = e.Response.Code
		}
		if e.Detail != "" {
			text += ": " + e.Detail
		}
	case audit.ApprovalRequested, audit.ApprovalVoted, audit.ApprovalResolved:
		a := e.Approval
		if a == nil {
			break
		}
		av := rv.approval(a.ID)
		switch e.Kind {
		case audit.ApprovalRequested:
			av.Rule, av.Approvers = cmpOr(av.Rule, a.Rule), union(av.Approvers, a.Approvers)
			av.State = cmpOr(a.State, "pending")
			text = fmt.Sprintf("approval %s requested", a.ID)
			if a.Rule != "" {
				text += " by rule " + a.Rule
			}
			if len(a.Approvers) > 0 {
				text += "; approvers: " + strings.Join(a.Approvers, ", ")
			}
		case audit.ApprovalVoted:
			voter := cmpOr(a.Voter, e.Actor.UID)
			av.Votes = append(av.Votes, voteView{Voter: voter, Vote: a.Vote, Time: e.Time, Index: e.Index})
			text = fmt.Sprintf("approval %s: %s voted %s", a.ID, voter, orDash(a.Vote))
		case audit.ApprovalResolved:
			av.State = cmpOr(a.State, av.State)
			text = fmt.Sprintf("approval %s %s", a.ID, orDash(a.State))
		}
		if e.Detail != "" {
			text += ": " + e.Detail
		}
	case audit.Response:
		if e.Response != nil {
			rv.Status = e.Response.Code
		}
		text = fmt.Sprintf("response %d", rv.Status)
		rv.mask(e)
		if len(rv.Masked) > 0 {
			text += "; masked " + maskedString(rv.Masked)
			if rv.Profile != "" {
				text += " (profile " + rv.Profile + ")"
			}
		}
		rv.BodySHA256 = cmpOr(e.BodySHA256, rv.BodySHA256)
	case audit.Aborted:
		rv.Aborted = cmpOr(e.Detail, "the exchange ended before its response was complete")
		if e.Response != nil {
			rv.Status = e.Response.Code
		}
		rv.mask(e)
		text = "aborted: " + rv.Aborted
	default:
		text = string(e.Kind)
	}
	rv.Events = append(rv.Events, eventRef{Index: e.Index, Time: e.Time, Kind: string(e.Kind), Text: text})
}

func (rv *requestView) approval(id string) *approvalView {
	for i := range rv.Approvals {
		if rv.Approvals[i].ID == id {
			return &rv.Approvals[i]
		}
	}
	rv.Approvals = append(rv.Approvals, approvalView{ID: id, State: "pending"})
	return &rv.Approvals[len(rv.Approvals)-1]
}

func (rv *requestView) mask(e loggedEvent) {
	if e.Masking == nil {
		return
	}
	rv.Profile = cmpOr(e.Masking.Profile, rv.Profile)
	for k, n := range e.Masking.Counts {
		if n == 0 {
			continue
		}
		if rv.Masked == nil {
			rv.Masked = map[string]int{}
		}
		rv.Masked[k] += n
	}
}

// settle sets the request's outcome from what was recorded.
func (rv *requestView) settle() {
	switch {
	case rv.AuthFailed != "":
		rv.Outcome = "auth_failed"
	case len(rv.Approvals) > 0:
		rv.Outcome = "held"
		switch st := rv.Approvals[len(rv.Approvals)-1].State; st {
		case "approved", "used":
			rv.Outcome = "approved"
		case "denied", "expired", "revoked":
			rv.Outcome = st
		}
	case rv.Decision != nil && !rv.Decision.Allow && !rv.Decision.Shadow:
		rv.Outcome = "blocked"
	case rv.Decision != nil:
		rv.Outcome = "allowed"
	default:
		rv.Outcome = "in_progress"
	}
	if rv.Aborted != "" {
		rv.Outcome = "aborted"
	}
}

// writeTimeline prints a session for a person.
func writeTimeline(w io.Writer, s *sessionView) {
	fmt.Fprintf(w, "Session %q (custos.session_id %s) in log %s, events %d to %d\n", s.Session, s.SessionID, s.LogID, s.First, s.Last)
	for _, p := range s.Principals {
		fmt.Fprintf(w, "Principal %s (%s", p.UID, orDash(p.Kind))
		if len(p.Groups) > 0 {
			fmt.Fprintf(w, "; groups %s", strings.Join(p.Groups, ", "))
		}
		if len(p.Roles) > 0 {
			fmt.Fprintf(w, "; roles %s", strings.Join(p.Roles, ", "))
		}
		fmt.Fprintln(w, ")")
	}
	fmt.Fprintf(w, "%d requests\n", len(s.Requests))
	for _, rv := range s.Requests {
		fmt.Fprintf(w, "\n%s  %s %s", rv.Time.Format(timeLayout), orDash(rv.Method), orDash(rv.Path))
		if rv.Connection != "" {
			fmt.Fprintf(w, " on %s", rv.Connection)
		}
		fmt.Fprintf(w, "  [%s; request %s]\n", rv.Outcome, orDash(rv.RequestID))
		if rv.Action != nil && rv.Action.Summary != "" {
			fmt.Fprintf(w, "    %-13s %s (risk %s)\n", "", rv.Action.Summary, orDash(rv.Action.Risk))
		}
		for _, ev := range rv.Events {
			fmt.Fprintf(w, "    #%-12d %s  %s\n", ev.Index, ev.Time.Format(timeLayout), ev.Text)
		}
	}
}

// maskedString is counts as entity=n, sorted by entity.
func maskedString(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// splitPrincipal splits ISSUER/SUBJECT at its last slash (issuers are URLs).
func splitPrincipal(uid string) (issuer, subject string) {
	i := strings.LastIndexByte(uid, '/')
	if i < 0 {
		return "", uid
	}
	return uid[:i], uid[i+1:]
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func union(a, b []string) []string {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(a, x)
		}
	}
	return a
}
