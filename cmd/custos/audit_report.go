package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
)

func newAuditReportCmd(g *globals) *cobra.Command {
	var (
		dir, sessionArg, principal, fromArg, toArg, format string
		keyArgs                                            []string
	)
	cmd := &cobra.Command{
		Use:   "report --dir DIR (--session ID [--principal P] | --from T --to T) [--format md|json] [--key VERIFIER]...",
		Short: "Build the evidence for an examiner: one session, or every session in a period",
		Long: `Build the evidence an examiner asks for, organised by the three FFIEC
questions:

 1. Authorization: who triggered the run (identity, IdP, kind, groups), which
    connections and paths were touched, under which policy revisions.
 2. Real-time control: which requests were blocked and why, which were held,
    who approved or denied them, what was masked (counts, never a value).
 3. Immutable evidence: the log id, the events' index range, the signed
    checkpoint that covers them, and each event's inclusion proof checked
    against that checkpoint.

--session is a custos.session_id or a session name (add --principal
ISSUER/SUBJECT when several principals used the name); --from and --to (RFC
3339) select every session with events in [from, to).

With --key VERIFIER (or @FILE; repeatable) the whole log is verified first, the
checkpoint's signature is checked and the report names the key's fingerprint;
a log that does not verify gives no report. Without --key the proofs are
checked against the checkpoint's root only, and the report says its signature
was not checked. --format md (default) or json.`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if dir == "" {
				return usageError{errors.New("--dir DIR is required (the audit.dir)")}
			}
			q := selection{session: sessionArg, principal: principal}
			switch {
			case sessionArg != "" && (fromArg != "" || toArg != ""):
				return usageError{errors.New("give --session ID or --from T --to T, not both")}
			case sessionArg == "" && (fromArg == "" || toArg == ""):
				return usageError{errors.New("give --session ID, or --from T and --to T (RFC 3339)")}
			case sessionArg == "" && principal != "":
				return usageError{errors.New("--principal goes with --session")}
			case sessionArg == "":
				var err error
				if q.from, err = parseReportTime("--from", fromArg); err != nil {
					return err
				}
				if q.to, err = parseReportTime("--to", toArg); err != nil {
					return err
				}
				if !q.from.Before(q.to) {
					return usageError{fmt.Errorf("--from %s is not before --to %s", fromArg, toArg)}
				}
			}
			if format != "md" && format != "json" {
				return usageError{fmt.Errorf("--format %q: use md or json", format)}
			}
			keys, err := verifierKeys(keyArgs)
			if err != nil {
				return err
			}
			rep, err := buildReport(dir, q, keys)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeIndentedJSON(g.stdout, rep)
			}
			writeReportMarkdown(g.stdout, rep)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the log directory (audit.dir)")
	cmd.Flags().StringVar(&sessionArg, "session", "", "one session: its custos.session_id or its name")
	cmd.Flags().StringVar(&principal, "principal", "", "the principal (ISSUER/SUBJECT) whose session of that name to report")
	cmd.Flags().StringVar(&fromArg, "from", "", "start of the period (RFC 3339, inclusive)")
	cmd.Flags().StringVar(&toArg, "to", "", "end of the period (RFC 3339, exclusive)")
	cmd.Flags().StringVar(&format, "format", "md", "md (Markdown) or json")
	cmd.Flags().StringArrayVar(&keyArgs, "key", nil, "a trusted verifier key, or @FILE holding one (repeatable)")
	return cmd
}

func parseReportTime(flag, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf("%s %q is not an RFC 3339 time (like 2026-01-02T15:04:05Z)", flag, s)}
	}
	return t, nil
}

// report is the evidence `audit report` prints, in the order of the three
// FFIEC questions.
type report struct {
	Title         string            `json:"title"`
	Generated     time.Time         `json:"generated"`
	LogID         string            `json:"log_id"`
	Dir           string            `json:"dir"`
	Scope         reportScope       `json:"scope"`
	Authorization authorizationPart `json:"authorization"`
	Control       controlPart       `json:"control"`
	Evidence      evidencePart      `json:"evidence"`
	// Sessions are the full timelines the three parts summarise.
	Sessions []*sessionView `json:"sessions"`
}

type reportScope struct {
	Session   string     `json:"session,omitempty"`
	Principal string     `json:"principal,omitempty"`
	From      *time.Time `json:"from,omitempty"`
	To        *time.Time `json:"to,omitempty"`
}

// authorizationPart answers: who triggered the run, what did it touch, under
// which policy.
type authorizationPart struct {
	Principals      []principalView `json:"principals"`
	Sessions        []sessionRef    `json:"sessions"`
	Resources       []resourceView  `json:"resources"`
	PolicyRevisions []revisionView  `json:"policy_revisions"`
	// Changes are the policy and configuration loads in the period.
	Changes []changeView `json:"changes,omitempty"`
}

type sessionRef struct {
	Session    string   `json:"session"`
	SessionID  string   `json:"session_id"`
	Principals []string `json:"principals"`
	Requests   int      `json:"requests"`
	FirstIndex int64    `json:"first_index"`
	LastIndex  int64    `json:"last_index"`
}

type resourceView struct {
	Connection string   `json:"connection"`
	Method     string   `json:"method"`
	Path       string   `json:"path"`
	Requests   int      `json:"requests"`
	Outcomes   []string `json:"outcomes"`
}

type revisionView struct {
	Revision  string `json:"revision"`
	Decisions int    `json:"decisions"`
}

type changeView struct {
	Index    int64     `json:"index"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Revision string    `json:"revision,omitempty"`
	Previous string    `json:"previous,omitempty"`
	Digest   string    `json:"digest,omitempty"`
	Source   string    `json:"source,omitempty"`
}

// controlPart answers: what was stopped, held, approved, masked.
type controlPart struct {
	Requests   int            `json:"requests"`
	Outcomes   map[string]int `json:"outcomes"`
	Blocked    []controlItem  `json:"blocked"`
	Approvals  []approvalItem `json:"approvals"`
	Masked     map[string]int `json:"masked"`
	MaskedBy   []controlItem  `json:"masked_requests"`
	Aborted    []controlItem  `json:"aborted"`
	AuthFailed []controlItem  `json:"auth_failed"`
	Shadow     []controlItem  `json:"shadow_denials,omitempty"`
}

// controlItem is one request in a list of part 2.
type controlItem struct {
	Time       time.Time      `json:"time"`
	Session    string         `json:"session"`
	Principal  string         `json:"principal"`
	RequestID  string         `json:"request_id"`
	Method     string         `json:"method"`
	Path       string         `json:"path"`
	Connection string         `json:"connection"`
	Reasons    []string       `json:"reasons,omitempty"`
	Detail     string         `json:"detail,omitempty"`
	Masked     map[string]int `json:"masked,omitempty"`
	Status     int            `json:"status,omitempty"`
	Index      int64          `json:"index"`
}

type approvalItem struct {
	controlItem
	ApprovalID string   `json:"approval_id"`
	Rule       string   `json:"rule,omitempty"`
	Approvers  []string `json:"approvers,omitempty"`
	State      string   `json:"state"`
	ApprovedBy []string `json:"approved_by"`
	DeniedBy   []string `json:"denied_by"`
}

// evidencePart answers: can this be shown to be what was recorded?
type evidencePart struct {
	LogID      string `json:"log_id"`
	Events     int    `json:"events"`
	FirstIndex int64  `json:"first_index"`
	LastIndex  int64  `json:"last_index"`
	// Checkpoint is the signed checkpoint the proofs are checked against.
	Checkpoint *checkpointView `json:"checkpoint"`
	// VerifierKeys and KeyFingerprints are the keys that checked it (none:
	// the signature was not checked).
	VerifierKeys    []string `json:"verifier_keys"`
	KeyFingerprints []string `json:"key_fingerprints"`
	// LogVerified is the summary of verifying the whole log with those keys.
	LogVerified string      `json:"log_verified,omitempty"`
	Proofs      []proofView `json:"proofs"`
	// Uncovered are listed events after the checkpoint: recorded, not yet
	// signed.
	Uncovered []int64 `json:"uncovered,omitempty"`
	Statement string  `json:"statement"`
}

type checkpointView struct {
	Size              int64  `json:"size"`
	Root              string `json:"root"`
	Note              string `json:"note"`
	SignatureVerified bool   `json:"signature_verified"`
}

type proofView struct {
	Index     int64  `json:"index"`
	Kind      string `json:"kind"`
	RequestID string `json:"request_id,omitempty"`
	LeafHash  string `json:"leaf_hash"`
	Verified  bool   `json:"verified"`
	Error     string `json:"error,omitempty"`
	// Proof is the whole proof, for `custos audit proof --verify`.
	Proof *audit.Proof `json:"proof,omitempty"`
}

// buildReport reads the log, selects the events and checks their proofs.
func buildReport(dir string, q selection, keys []string) (*report, error) {
	r, err := audit.OpenReader(nil, dir)
	if err != nil {
		return nil, err
	}
	rep := &report{Generated: time.Now().UTC(), LogID: r.ID(), Dir: dir}
	var sum *audit.Summary
	if len(keys) > 0 {
		// Verify first: a log that does not verify is not evidence.
		if sum, err = audit.Verify(dir, audit.VerifyOptions{Keys: keys}); err != nil {
			return nil, fmt.Errorf("the log does not verify, so no report: %w", err)
		}
		rep.Evidence.LogVerified = verifySummary(sum, nil)
	}
	sel, err := selectEvents(r, q)
	if err != nil {
		return nil, err
	}
	if q.session != "" {
		rep.Scope = reportScope{Session: q.session, Principal: q.principal}
		rep.Title = fmt.Sprintf("Audit evidence: session %q", q.session)
	} else {
		rep.Scope = reportScope{From: &q.from, To: &q.to}
		rep.Title = fmt.Sprintf("Audit evidence: %s to %s", q.from.UTC().Format(time.RFC3339), q.to.UTC().Format(time.RFC3339))
	}
	if len(sel.events) > 0 {
		rep.Sessions = buildSessions(r.ID(), sel.events)
	}
	if q.session != "" && len(rep.Sessions) == 1 {
		s := rep.Sessions[0]
		rep.Title = fmt.Sprintf("Audit evidence: session %q (custos.session_id %s)", s.Session, s.SessionID)
	}
	rep.authorization(sel.changes)
	rep.control()
	if err := rep.evidence(r, append(sel.events, sel.changes...), sum); err != nil {
		return nil, err
	}
	return rep, nil
}

func (rep *report) authorization(changes []loggedEvent) {
	a := &rep.Authorization
	seen := map[string]bool{}
	res := map[[3]string]*resourceView{}
	var order []*resourceView
	revs := map[string]int{}
	for _, s := range rep.Sessions {
		ref := sessionRef{Session: s.Session, SessionID: s.SessionID, Requests: len(s.Requests), FirstIndex: s.First, LastIndex: s.Last}
		for _, p := range s.Principals {
			ref.Principals = append(ref.Principals, p.UID)
			if !seen[p.UID] {
				seen[p.UID] = true
				a.Principals = append(a.Principals, p)
			}
		}
		a.Sessions = append(a.Sessions, ref)
		for _, rv := range s.Requests {
			if rv.Method == "" && rv.Path == "" && rv.Connection == "" {
				continue
			}
			k := [3]string{rv.Connection, rv.Method, rv.Path}
			v := res[k]
			if v == nil {
				v = &resourceView{Connection: rv.Connection, Method: rv.Method, Path: rv.Path}
				res[k] = v
				order = append(order, v)
			}
			v.Requests++
			v.Outcomes = union(v.Outcomes, []string{rv.Outcome})
			if rv.Decision != nil {
				revs[rv.Decision.PolicyRevision]++
			}
		}
	}
	a.Resources = []resourceView{}
	for _, v := range order {
		a.Resources = append(a.Resources, *v)
	}
	for _, rev := range slices.Sorted(maps.Keys(revs)) {
		a.PolicyRevisions = append(a.PolicyRevisions, revisionView{Revision: rev, Decisions: revs[rev]})
	}
	for _, e := range changes {
		c := changeView{Index: e.Index, Time: e.Time, Kind: string(e.Kind)}
		if ch := e.Change; ch != nil {
			c.Revision, c.Previous, c.Digest, c.Source = ch.Revision, ch.Previous, ch.Digest, ch.Source
		}
		a.Changes = append(a.Changes, c)
	}
}

func (rep *report) control() {
	c := &rep.Control
	c.Outcomes = map[string]int{}
	c.Masked = map[string]int{}
	c.Blocked, c.Approvals, c.MaskedBy, c.Aborted, c.AuthFailed = []controlItem{}, []approvalItem{}, []controlItem{}, []controlItem{}, []controlItem{}
	for _, s := range rep.Sessions {
		for _, rv := range s.Requests {
			c.Requests++
			c.Outcomes[rv.Outcome]++
			it := controlItem{Time: rv.Time, Session: s.Session, Principal: rv.Principal, RequestID: rv.RequestID,
				Method: rv.Method, Path: rv.Path, Connection: rv.Connection, Status: rv.Status, Index: rv.Events[0].Index}
			if d := rv.Decision; d != nil && !d.Allow {
				di := it
				di.Reasons = d.Reasons
				di.Index = eventIndex(rv, audit.Decision)
				if d.Shadow {
					c.Shadow = append(c.Shadow, di)
				} else if len(rv.Approvals) == 0 {
					c.Blocked = append(c.Blocked, di)
				}
			}
			for _, av := range rv.Approvals {
				ai := approvalItem{controlItem: it, ApprovalID: av.ID, Rule: av.Rule, Approvers: av.Approvers, State: av.State,
					ApprovedBy: []string{}, DeniedBy: []string{}}
				ai.Index = eventIndex(rv, audit.ApprovalRequested)
				for _, v := range av.Votes {
					if v.Vote == "deny" || v.Vote == "denied" {
						ai.DeniedBy = union(ai.DeniedBy, []string{v.Voter})
					} else {
						ai.ApprovedBy = union(ai.ApprovedBy, []string{v.Voter})
					}
				}
				c.Approvals = append(c.Approvals, ai)
			}
			if len(rv.Masked) > 0 {
				mi := it
				mi.Masked = rv.Masked
				mi.Index = eventIndex(rv, audit.Response)
				c.MaskedBy = append(c.MaskedBy, mi)
				for k, n := range rv.Masked {
					c.Masked[k] += n
				}
			}
			if rv.Aborted != "" {
				ai := it
				ai.Detail, ai.Index = rv.Aborted, eventIndex(rv, audit.Aborted)
				c.Aborted = append(c.Aborted, ai)
			}
			if rv.AuthFailed != "" {
				ai := it
				ai.Detail, ai.Index = rv.AuthFailed, eventIndex(rv, audit.AuthFailed)
				c.AuthFailed = append(c.AuthFailed, ai)
			}
		}
	}
}

// eventIndex is the index of the request's first event of kind k (or its
// first event).
func eventIndex(rv requestView, k audit.Kind) int64 {
	for _, e := range rv.Events {
		if e.Kind == string(k) {
			return e.Index
		}
	}
	return rv.Events[0].Index
}

// evidence picks the latest checkpoint (signed by the keys, when given) and
// proves every listed event in it.
func (rep *report) evidence(r *audit.Reader, evs []loggedEvent, sum *audit.Summary) error {
	ev := &rep.Evidence
	ev.LogID = r.ID()
	ev.Events = len(evs)
	ev.Proofs = []proofView{}
	ev.VerifierKeys, ev.KeyFingerprints = []string{}, []string{}
	slices.SortFunc(evs, func(a, b loggedEvent) int { return cmpInt64(a.Index, b.Index) })
	if len(evs) > 0 {
		ev.FirstIndex, ev.LastIndex = evs[0].Index, evs[len(evs)-1].Index
	}
	cps, err := r.Checkpoints()
	if err != nil {
		return err
	}
	var keys []string
	if sum != nil {
		keys = sum.Keys
	}
	var cp *audit.SignedCheckpoint
	for i := range cps {
		if cp != nil && cps[i].Size <= cp.Size {
			continue
		}
		if len(keys) > 0 {
			if _, err := audit.OpenCheckpoint(cps[i].Note, keys...); err != nil {
				continue
			}
		}
		cp = &cps[i]
	}
	if cp == nil {
		ev.Statement = "No signed checkpoint covers these events yet: they are recorded but not committed to by a signature. Run the report again once the log has signed a checkpoint."
		for _, e := range evs {
			ev.Uncovered = append(ev.Uncovered, e.Index)
		}
		return nil
	}
	ev.Checkpoint = &checkpointView{Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root[:]), Note: string(cp.Note), SignatureVerified: len(keys) > 0}
	if len(keys) > 0 {
		for _, k := range keys {
			if _, err := audit.OpenCheckpoint(cp.Note, k); err == nil {
				ev.VerifierKeys = append(ev.VerifierKeys, k)
				ev.KeyFingerprints = append(ev.KeyFingerprints, keyFingerprint(k))
			}
		}
	}
	proved := 0
	for _, e := range evs {
		if e.Index >= cp.Size {
			ev.Uncovered = append(ev.Uncovered, e.Index)
			continue
		}
		leaf := tlog.RecordHash(e.raw)
		pv := proofView{Index: e.Index, Kind: string(e.Kind), RequestID: e.RequestID, LeafHash: base64.StdEncoding.EncodeToString(leaf[:])}
		p, err := r.Prove(*cp, e.Index, e.raw)
		if err == nil {
			pv.Proof = p
			if len(keys) > 0 {
				_, _, err = audit.VerifyProof(p, keys...)
			} else {
				err = tlog.CheckRecord(p.Inclusion, cp.Size, cp.Root, e.Index, leaf)
			}
		}
		if err != nil {
			pv.Error = err.Error()
		} else {
			pv.Verified = true
			proved++
		}
		ev.Proofs = append(ev.Proofs, pv)
	}
	var st strings.Builder
	fmt.Fprintf(&st, "%d of the %d events listed are proved included in the tree of log %s at size %d (root %s)", proved, len(evs), ev.LogID, cp.Size, ev.Checkpoint.Root)
	if len(keys) > 0 {
		fmt.Fprintf(&st, ", a checkpoint whose signature was verified with the key %s", strings.Join(ev.KeyFingerprints, ", "))
		st.WriteString("; the whole log was verified with the same keys. Anyone holding the verifier key can check each proof offline with `custos audit proof --verify FILE --key VERIFIER`.")
	} else {
		st.WriteString(". The checkpoint's signature was NOT checked (no --key was given): without the verifier key this is not evidence against someone who can write to the log directory. Run again with --key.")
	}
	if n := len(ev.Uncovered); n > 0 {
		fmt.Fprintf(&st, " %d listed events come after that checkpoint: recorded, not yet signed.", n)
	}
	if proved < len(ev.Proofs) {
		st.WriteString(" Some proofs FAILED: see each proof's error.")
	}
	ev.Statement = st.String()
	return nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// writeReportMarkdown prints the report for a person.
func writeReportMarkdown(w io.Writer, rep *report) {
	fmt.Fprintf(w, "# %s\n\n", rep.Title)
	fmt.Fprintf(w, "Generated %s by `custos audit report` from audit log `%s` (directory `%s`).\n", rep.Generated.Format(time.RFC3339), rep.LogID, rep.Dir)
	if rep.Scope.Session != "" {
		fmt.Fprintf(w, "Scope: session `%s`", rep.Scope.Session)
		if rep.Scope.Principal != "" {
			fmt.Fprintf(w, " of principal `%s`", rep.Scope.Principal)
		}
		fmt.Fprintln(w, ".")
	} else {
		fmt.Fprintf(w, "Scope: every session with events from %s (inclusive) to %s (exclusive).\n", rep.Scope.From.UTC().Format(time.RFC3339), rep.Scope.To.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w, "Times are RFC 3339, UTC. `#N` is an event's index in the signed log.")

	a := rep.Authorization
	fmt.Fprintf(w, "\n## 1. Authorization: who triggered the run, and what it touched\n\n")
	fmt.Fprintln(w, "| principal (ISSUER/SUBJECT) | IdP (issuer) | subject | kind | groups | roles | app |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, p := range a.Principals {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", md(p.UID), md(p.Issuer), md(p.Subject), md(p.Kind), md(strings.Join(p.Groups, ", ")), md(strings.Join(p.Roles, ", ")), md(p.App))
	}
	fmt.Fprintf(w, "\nSessions:\n\n")
	for _, s := range a.Sessions {
		fmt.Fprintf(w, "- `%s` (custos.session_id `%s`) by %s: %d requests, events #%d to #%d\n", s.Session, s.SessionID, md(strings.Join(s.Principals, ", ")), s.Requests, s.FirstIndex, s.LastIndex)
	}
	fmt.Fprintf(w, "\nResources touched:\n\n| connection | method | path | requests | outcomes |\n|---|---|---|---|---|\n")
	for _, r := range a.Resources {
		fmt.Fprintf(w, "| %s | %s | %s | %d | %s |\n", md(r.Connection), md(r.Method), md(r.Path), r.Requests, strings.Join(r.Outcomes, ", "))
	}
	fmt.Fprintf(w, "\nPolicy revisions that decided them:\n\n")
	for _, r := range a.PolicyRevisions {
		fmt.Fprintf(w, "- `%s`: %d decisions\n", orDash(r.Revision), r.Decisions)
	}
	if len(a.PolicyRevisions) == 0 {
		fmt.Fprintln(w, "- none (no decision events)")
	}
	if len(a.Changes) > 0 {
		fmt.Fprintf(w, "\nPolicy and configuration loads in the period:\n\n")
		for _, c := range a.Changes {
			fmt.Fprintf(w, "- %s %s: revision `%s` (previous `%s`, sha256 `%s`, from %s) #%d\n", c.Time.Format(time.RFC3339), c.Kind, orDash(c.Revision), orDash(c.Previous), orDash(c.Digest), md(orDash(c.Source)), c.Index)
		}
	}

	c := rep.Control
	fmt.Fprintf(w, "\n## 2. Real-time control: what was blocked, held, approved and masked\n\n")
	fmt.Fprintf(w, "%d requests:", c.Requests)
	for _, k := range slices.Sorted(maps.Keys(c.Outcomes)) {
		fmt.Fprintf(w, " %s %d;", k, c.Outcomes[k])
	}
	fmt.Fprintf(w, "\n\n| time | principal | request | method | path | connection | outcome | status | masked | events |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range rep.Sessions {
		for _, rv := range s.Requests {
			idx := make([]string, len(rv.Events))
			for i, e := range rv.Events {
				idx[i] = fmt.Sprintf("#%d", e.Index)
			}
			status := ""
			if rv.Status != 0 {
				status = fmt.Sprint(rv.Status)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", rv.Time.Format(time.RFC3339Nano), md(rv.Principal), md(rv.RequestID), md(rv.Method), md(rv.Path), md(rv.Connection), rv.Outcome, status, md(maskedString(rv.Masked)), strings.Join(idx, " "))
		}
	}
	fmt.Fprintf(w, "\n### Blocked\n\n")
	listItems(w, c.Blocked, func(it controlItem) string { return "reasons: " + md(strings.Join(it.Reasons, "; ")) })
	if len(c.Shadow) > 0 {
		fmt.Fprintf(w, "\n### Denied in shadow mode (let through, not enforced)\n\n")
		listItems(w, c.Shadow, func(it controlItem) string { return "reasons: " + md(strings.Join(it.Reasons, "; ")) })
	}
	fmt.Fprintf(w, "\n### Held for approval\n\n")
	if len(c.Approvals) == 0 {
		fmt.Fprintln(w, "- none")
	}
	for _, ap := range c.Approvals {
		fmt.Fprintf(w, "- %s %s %s on %s (request `%s`): approval `%s`", ap.Time.Format(time.RFC3339Nano), md(ap.Method), md(ap.Path), md(ap.Connection), md(ap.RequestID), md(ap.ApprovalID))
		if ap.Rule != "" {
			fmt.Fprintf(w, ", rule `%s`", md(ap.Rule))
		}
		if len(ap.Approvers) > 0 {
			fmt.Fprintf(w, ", eligible: %s", md(strings.Join(ap.Approvers, ", ")))
		}
		fmt.Fprintf(w, "; **%s**", ap.State)
		if len(ap.ApprovedBy) > 0 {
			fmt.Fprintf(w, "; approved by %s", md(strings.Join(ap.ApprovedBy, ", ")))
		}
		if len(ap.DeniedBy) > 0 {
			fmt.Fprintf(w, "; denied by %s", md(strings.Join(ap.DeniedBy, ", ")))
		}
		fmt.Fprintf(w, " #%d\n", ap.Index)
	}
	fmt.Fprintf(w, "\n### Masked (counts per entity type; values never enter the log)\n\n")
	if len(c.Masked) == 0 {
		fmt.Fprintln(w, "- nothing was masked")
	} else {
		fmt.Fprintf(w, "Total: %s\n\n", maskedString(c.Masked))
		listItems(w, c.MaskedBy, func(it controlItem) string { return "masked " + maskedString(it.Masked) })
	}
	if len(c.Aborted) > 0 {
		fmt.Fprintf(w, "\n### Aborted\n\n")
		listItems(w, c.Aborted, func(it controlItem) string { return md(it.Detail) })
	}
	if len(c.AuthFailed) > 0 {
		fmt.Fprintf(w, "\n### Failed authentication\n\n")
		listItems(w, c.AuthFailed, func(it controlItem) string { return md(it.Detail) })
	}

	e := rep.Evidence
	fmt.Fprintf(w, "\n## 3. Immutable evidence: the signed log\n\n")
	fmt.Fprintf(w, "- Log id: `%s`\n- Events listed: %d, index #%d to #%d\n", e.LogID, e.Events, e.FirstIndex, e.LastIndex)
	if cp := e.Checkpoint; cp != nil {
		sig := "signature verified"
		if !cp.SignatureVerified {
			sig = "signature NOT checked (no --key)"
		}
		fmt.Fprintf(w, "- Checkpoint: size %d, root `%s` (%s)\n", cp.Size, cp.Root, sig)
	}
	for i, k := range e.VerifierKeys {
		fmt.Fprintf(w, "- Verifier key: `%s` (fingerprint `%s`)\n", k, e.KeyFingerprints[i])
	}
	if e.LogVerified != "" {
		fmt.Fprintf(w, "- Whole log: %s\n", e.LogVerified)
	}
	fmt.Fprintf(w, "\n%s\n", e.Statement)
	if cp := e.Checkpoint; cp != nil {
		fmt.Fprintf(w, "\nThe signed checkpoint (C2SP signed note):\n\n```\n%s```\n", cp.Note)
	}
	if len(e.Proofs) > 0 {
		fmt.Fprintf(w, "\n| index | kind | request | leaf hash | inclusion proof |\n|---|---|---|---|---|\n")
		for _, p := range e.Proofs {
			st := "verified"
			if !p.Verified {
				st = "FAILED: " + md(p.Error)
			}
			fmt.Fprintf(w, "| #%d | %s | %s | `%s` | %s |\n", p.Index, p.Kind, md(p.RequestID), p.LeafHash, st)
		}
		fmt.Fprintf(w, "\nEach line below is one complete proof (event, inclusion proof, checkpoint); save a line to a file and check it with `custos audit proof --verify FILE --key VERIFIER`:\n\n```\n")
		for _, p := range e.Proofs {
			if p.Proof != nil {
				b, _ := json.Marshal(p.Proof)
				fmt.Fprintf(w, "%s\n", b)
			}
		}
		fmt.Fprintln(w, "```")
	}
	if len(e.Uncovered) > 0 {
		fmt.Fprintf(w, "\nEvents after the checkpoint (not yet signed): %s\n", joinIndexes(e.Uncovered))
	}
}

func listItems(w io.Writer, items []controlItem, detail func(controlItem) string) {
	if len(items) == 0 {
		fmt.Fprintln(w, "- none")
	}
	for _, it := range items {
		fmt.Fprintf(w, "- %s %s %s on %s by %s (request `%s`): %s #%d\n", it.Time.Format(time.RFC3339Nano), md(it.Method), md(it.Path), md(it.Connection), md(it.Principal), md(it.RequestID), detail(it), it.Index)
	}
}

func joinIndexes(xs []int64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("#%d", x)
	}
	return strings.Join(s, " ")
}

// md escapes text for a Markdown table cell or list item: recorded values
// (paths, reasons) must not break the table or inject markup.
func md(s string) string {
	r := strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ", "`", "'", "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}
