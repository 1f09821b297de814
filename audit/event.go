package audit

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Kind says what an event records: the custos.kind field.
type Kind string

// Event kinds, as CONTRACT.md lists them.
const (
	// AuthFailed: a request was refused because its credentials did not verify.
	AuthFailed Kind = "auth_failed"
	// Decision: Check decided a request (allowed or denied).
	Decision Kind = "decision"
	// ApprovalRequested: a request is held, or waits, for an approval.
	ApprovalRequested Kind = "approval_requested"
	// ApprovalVoted: an approver voted on an approval.
	ApprovalVoted Kind = "approval_voted"
	// ApprovalResolved: an approval was approved, denied, expired, used or revoked.
	ApprovalResolved Kind = "approval_resolved"
	// Response: the upstream answered and the response went back to the agent.
	Response Kind = "response"
	// Aborted: an exchange ended before its response was complete.
	Aborted Kind = "aborted"
	// PolicyChanged: a policy bundle was loaded (its revision changed).
	PolicyChanged Kind = "policy_changed"
	// ConfigChanged: a configuration was loaded.
	ConfigChanged Kind = "config_changed"
)

// Kinds lists every event kind.
var Kinds = []Kind{AuthFailed, Decision, ApprovalRequested, ApprovalVoted, ApprovalResolved, Response, Aborted, PolicyChanged, ConfigChanged}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, v := range Kinds {
		if k == v {
			return true
		}
	}
	return false
}

// OCSF identifiers of the API Activity class that every event belongs to.
const (
	ClassAPIActivity    = 6003
	CategoryApplication = 6
	OCSFVersion         = "1.3.0"
)

// Event is one audit record. It is shaped after OCSF API Activity (class
// 6003) with a custos block; see Encode for the JSON. It never holds
// credentials, request or response bodies, or unmasked values: statements and
// commands in Action.Summary are masked before they get here.
type Event struct {
	Kind Kind
	// Time is when it happened; Append sets it when zero.
	Time time.Time
	// LogID and Index are the event's position, set by the log when it is
	// appended (whatever the caller put there).
	LogID string
	Index int64

	// SessionID is the session namespaced by principal; Session is the name
	// the agent gave or the derived one.
	SessionID  string
	Session    string
	RequestID  string
	Connection string
	Actor      Actor

	Request  *HTTPRequest
	Response *HTTPResponse
	Decision *DecisionInfo
	Action   *Action
	Approval *Approval
	Masking  *Masking
	// BodySHA256 is the hex SHA-256 of the body the agent received (after
	// masking), for response events.
	BodySHA256 string
	// Change describes a policy or configuration load.
	Change *Change
	// Claimed is what a refused token said about its caller, unverified
	// (auth_failed events).
	Claimed *Claimed
	// Started and Finished bound an exchange (response, aborted).
	Started  time.Time
	Finished time.Time
	// Detail explains an abort, an authentication failure or a denial.
	Detail string
}

// Actor is who made the request: OCSF actor.user.
type Actor struct {
	// UID is the principal as ISSUER/SUBJECT.
	UID string
	// Type is "human" or "workload".
	Type   string
	Groups []string
	Roles  []string
	// App is the client application (azp/appid), if any.
	App string
}

// HTTPRequest is OCSF http_request, without query or headers (they may carry
// credentials).
type HTTPRequest struct {
	Method string
	// Path is the path the upstream receives (prefix stripped).
	Path string
}

// HTTPResponse is OCSF http_response.
type HTTPResponse struct {
	Code int
}

// DecisionInfo is custos.decision.
type DecisionInfo struct {
	ID             string
	Allow          bool
	Reasons        []string
	PolicyRevision string
	// Shadow is set when the policy ran in shadow mode: what was decided was
	// not enforced.
	Shadow bool
}

// Action is custos.action: what the inspectors understood the request to do.
type Action struct {
	Kind string
	Risk string
	// Summary is one line a human can read, masked.
	Summary string
}

// Approval is custos.approval.
type Approval struct {
	ID        string
	State     string
	Rule      string
	Approvers []string
	// Voter and Vote are set on approval_voted events.
	Voter string
	Vote  string
}

// Masking is custos.masking: what was masked and where, never a value.
type Masking struct {
	Profile string
	// Counts is per entity type; Operators per entity type and operator.
	Counts    map[string]int
	Operators map[string]map[string]int
	// Pointers are the JSON pointers of the masked values (their tokens
	// masked too), at most 1,000; PointersDropped counts the rest.
	Pointers        []string
	PointersDropped int
	// Unread is set when a best_effort profile let a body the engine
	// cannot read pass unmasked.
	Unread bool
}

// Change is custos.change: a policy or configuration load.
type Change struct {
	Revision string
	Previous string
	// Digest is the hex SHA-256 of what was loaded.
	Digest string
	Source string
}

// Claimed is custos.claimed: the unverified iss, sub and kid of a refused
// token. Evidence of who tried, never of who it was.
type Claimed struct {
	Issuer, Subject, KeyID string
}

// Position is where an event sits in a log: LOG_ID/INDEX, the value of the
// x-custos-evidence header.
type Position struct {
	LogID string
	Index int64
}

// String returns LOG_ID/INDEX.
func (p Position) String() string { return p.LogID + "/" + strconv.FormatInt(p.Index, 10) }

// ParsePosition parses LOG_ID/INDEX.
func ParsePosition(s string) (Position, error) {
	i := strings.LastIndexByte(s, '/')
	if i <= 0 {
		return Position{}, errors.New("audit: position is not LOG_ID/INDEX")
	}
	n, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != s[i+1:] {
		return Position{}, errors.New("audit: position has a bad index")
	}
	return Position{LogID: s[:i], Index: n}, nil
}

// activity is the OCSF activity_id: what the API call did to its resource.
func (e *Event) activity() (int, string) {
	switch e.Kind {
	case PolicyChanged, ConfigChanged:
		return 3, "Update"
	}
	if e.Request == nil {
		return 0, "Unknown"
	}
	switch strings.ToUpper(e.Request.Method) {
	case "GET", "HEAD", "OPTIONS":
		return 2, "Read"
	case "POST":
		return 1, "Create"
	case "PUT", "PATCH":
		return 3, "Update"
	case "DELETE":
		return 4, "Delete"
	case "":
		return 0, "Unknown"
	}
	return 99, "Other"
}

// status is the OCSF status_id: 1 success, 2 failure.
func (e *Event) status() (int, string) {
	fail := false
	switch e.Kind {
	case AuthFailed, Aborted:
		fail = true
	case Decision:
		fail = e.Decision != nil && !e.Decision.Allow
	case Response:
		fail = e.Response != nil && e.Response.Code >= 400
	case ApprovalResolved:
		fail = e.Approval != nil && e.Approval.State != "approved" && e.Approval.State != "used"
	}
	if fail {
		return 2, "Failure"
	}
	return 1, "Success"
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// object builds the event's JSON. withHole leaves custos.index as a hole for
// the log to fill.
func (e *Event) object(withHole bool) object {
	act, actName := e.activity()
	st, stName := e.status()
	o := make(object, 0, 20)
	o.add("class_uid", int64(ClassAPIActivity))
	o.add("class_name", "API Activity")
	o.add("category_uid", int64(CategoryApplication))
	o.add("activity_id", int64(act))
	o.add("activity_name", actName)
	o.add("type_uid", int64(ClassAPIActivity*100+act))
	o.add("severity_id", int64(1))
	o.add("status_id", int64(st))
	o.add("status", stName)
	o.add("time", formatTime(e.Time))
	o.add("metadata", object{
		{"version", OCSFVersion},
		{"product", object{{"name", "custos"}, {"vendor_name", "custos"}}},
		{"log_name", e.LogID},
	})

	user := object{{"uid", e.Actor.UID}, {"type", e.Actor.Type}}
	groups := make([]object, len(e.Actor.Groups))
	for i, g := range e.Actor.Groups {
		groups[i] = object{{"name", g}}
	}
	user.add("groups", groups)
	if len(e.Actor.Roles) > 0 {
		user.add("roles", e.Actor.Roles)
	}
	actor := object{{"user", user}}
	if e.Actor.App != "" {
		actor.add("app_name", e.Actor.App)
	}
	o.add("actor", actor)

	if e.Request != nil {
		o.add("http_request", object{{"http_method", e.Request.Method}, {"url", object{{"path", e.Request.Path}}}})
	}
	if e.Response != nil {
		o.add("http_response", object{{"code", int64(e.Response.Code)}})
	}
	if !e.Started.IsZero() {
		o.add("start_time", formatTime(e.Started))
	}
	if !e.Finished.IsZero() {
		o.add("end_time", formatTime(e.Finished))
	}

	c := make(object, 0, 16)
	c.add("kind", string(e.Kind))
	c.add("log_id", e.LogID)
	if withHole {
		c.add("index", hole{})
	} else {
		c.add("index", e.Index)
	}
	c.add("session_id", e.SessionID)
	c.add("session", e.Session)
	c.add("request_id", e.RequestID)
	c.str("connection", e.Connection)
	if d := e.Decision; d != nil {
		reasons := d.Reasons
		if reasons == nil {
			reasons = []string{}
		}
		do := object{{"id", d.ID}, {"allow", d.Allow}, {"reasons", reasons}, {"policy_revision", d.PolicyRevision}}
		if d.Shadow {
			do.add("shadow", true)
		}
		c.add("decision", do)
	}
	if a := e.Action; a != nil {
		ao := object{{"kind", a.Kind}, {"risk", a.Risk}}
		ao.str("summary", a.Summary)
		c.add("action", ao)
	}
	if a := e.Approval; a != nil {
		ao := object{{"id", a.ID}, {"state", a.State}}
		ao.str("rule", a.Rule)
		if len(a.Approvers) > 0 {
			ao.add("approvers", a.Approvers)
		}
		ao.str("voter", a.Voter)
		ao.str("vote", a.Vote)
		c.add("approval", ao)
	}
	if m := e.Masking; m != nil {
		counts := object{}
		for k, v := range m.Counts {
			counts.add(k, int64(v))
		}
		mo := object{{"profile", m.Profile}, {"counts", counts}}
		if len(m.Operators) > 0 {
			ops := object{}
			for ent, byOp := range m.Operators {
				o := object{}
				for op, n := range byOp {
					o.add(op, int64(n))
				}
				ops.add(ent, o)
			}
			mo.add("operators", ops)
		}
		if len(m.Pointers) > 0 {
			mo.add("pointers", m.Pointers)
		}
		if m.PointersDropped > 0 {
			mo.add("pointers_dropped", int64(m.PointersDropped))
		}
		if m.Unread {
			mo.add("unread", true)
		}
		c.add("masking", mo)
	}
	c.str("body_sha256", e.BodySHA256)
	if ch := e.Change; ch != nil {
		co := object{{"revision", ch.Revision}}
		co.str("previous", ch.Previous)
		co.str("digest", ch.Digest)
		co.str("source", ch.Source)
		c.add("change", co)
	}
	if cl := e.Claimed; cl != nil {
		co := object{}
		co.str("issuer", cl.Issuer)
		co.str("subject", cl.Subject)
		co.str("key_id", cl.KeyID)
		c.add("claimed", co)
	}
	c.str("detail", e.Detail)
	o.add("custos", c)
	return o
}

// Encode returns the event's canonical JSON: the bytes the log stores and
// hashes.
func (e *Event) Encode() []byte {
	return e.object(false).encode(nil, nil)
}

// encodeWithHole encodes the event without its index and returns where the
// index goes.
func (e *Event) encodeWithHole() ([]byte, int) {
	at := -1
	b := e.object(true).encode(make([]byte, 0, 512), &at)
	return b, at
}
