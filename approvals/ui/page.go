package ui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custos-dev/custos/approvals"
	"github.com/custos-dev/custos/filters/identity"
)

// errSignedOut is a request without a live session: none, expired, or
// its token no longer verifies.
var errSignedOut = errors.New("not signed in")

// current returns the request's session, its token verified again so that
// a token that expired or is no longer trusted ends it.
func (p *Page) current(r *http.Request) (string, session, error) {
	id, se, ok := p.sessionOf(r)
	if !ok {
		return "", session{}, errSignedOut
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	pr, err := p.o.Authenticate(ctx, se.token)
	if err != nil {
		var ie *identity.Error
		if errors.As(err, &ie) {
			p.sessions.end(id)
			return "", session{}, errSignedOut
		}
		return "", session{}, fmt.Errorf("verify the session's token: %w", err)
	}
	se.principal = pr
	p.sessions.update(id, &pr, nil)
	return id, se, nil
}

// page serves the approvals page, or sends a visitor who is not signed in
// to sign in.
func (p *Page) page(w http.ResponseWriter, r *http.Request) {
	id, se, err := p.current(r)
	if errors.Is(err, errSignedOut) {
		http.Redirect(w, r, LoginPath, http.StatusSeeOther)
		return
	}
	if err != nil {
		p.unavailable(w, err)
		return
	}
	items, err := p.items(r.Context(), se.principal)
	if err != nil {
		p.unavailable(w, err)
		return
	}
	p.render(w, http.StatusOK, "page", pageData{Title: "Approvals", Nonce: randomString(16),
		Who: approvals.PersonOf(se.principal).String(), Human: se.principal.Kind == identity.KindHuman,
		CSRF: se.csrf, Flash: p.sessions.takeFlash(id), Items: items, Version: version(items),
		PollMillis: int(PollEvery / time.Millisecond)})
}

// listJSON is what the page polls: the list rendered as the page renders
// it, and a version that changes when the list does.
type listJSON struct {
	Version string `json:"version"`
	Count   int    `json:"count"`
	HTML    string `json:"html"`
}

// list serves the JSON the page polls.
func (p *Page) list(w http.ResponseWriter, r *http.Request) {
	_, se, err := p.current(r)
	if errors.Is(err, errSignedOut) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated", "message": "sign in again", "login": LoginPath})
		return
	}
	if err != nil {
		p.o.Logger.Error("approvals page", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "unavailable", "message": "try again in a moment"})
		return
	}
	items, err := p.items(r.Context(), se.principal)
	if err != nil {
		p.o.Logger.Error("approvals page", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "unavailable", "message": "the approval store could not answer"})
		return
	}
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, "list", pageData{CSRF: se.csrf, Items: items,
		Human: se.principal.Kind == identity.KindHuman}); err != nil {
		p.unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, listJSON{Version: version(items), Count: len(items), HTML: b.String()})
}

// item is one pending approval as the page shows it.
type item struct {
	approvals.Approval
	// Left is the time left before the approval expires, readable.
	Left string
	// Approvals counts the approving votes so far.
	Approvals int
	// CanVote is set when the viewer may vote; otherwise Why says why not.
	CanVote bool
	Why     string
}

// items are the pending approvals pr may see, newest first.
func (p *Page) items(ctx context.Context, pr identity.Principal) ([]item, error) {
	all, err := p.o.Service.List(ctx, approvals.StatePending)
	if err != nil {
		return nil, fmt.Errorf("list pending approvals: %w", err)
	}
	now := p.o.Now()
	var out []item
	for _, a := range all {
		if !approvals.CanSee(&a, pr) {
			continue
		}
		it := item{Approval: a, Left: timeLeft(a.Expires.Sub(now)), Approvals: countApprovals(a),
			CanVote: approvals.Eligible(&a, pr)}
		for _, v := range a.Votes {
			if v.Voter.ID() == pr.ID() {
				it.CanVote, it.Why = false, "You have voted on this request ("+v.Decision+")."
			}
		}
		switch {
		case it.Why != "" || it.CanVote:
		case pr.ID() == a.Requester.ID():
			it.Why = "You asked for this; another approver decides."
		case pr.Kind != identity.KindHuman:
			it.Why = "You are signed in as a workload; only people vote."
		default:
			it.Why = "You are not one of this request's approvers."
		}
		out = append(out, it)
	}
	return out, nil
}

// version changes whenever what the list shows changes, apart from the
// time left, which the page counts down itself.
func version(items []item) string {
	h := sha256.New()
	for _, it := range items {
		fmt.Fprintf(h, "%s %s %d %t;", it.ID, it.State, len(it.Votes), it.CanVote)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// timeLeft is d as the page shows it.
func timeLeft(d time.Duration) string {
	switch {
	case d <= 0:
		return "expired"
	case d < time.Minute:
		return fmt.Sprintf("%ds left", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds left", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %02dm left", int(d.Hours()), int(d.Minutes())%60)
	}
}

// vote casts the signed-in approver's vote and shows the result on the
// page it redirects to.
func (p *Page) vote(w http.ResponseWriter, r *http.Request) {
	sid, se, err := p.current(r)
	if errors.Is(err, errSignedOut) {
		p.message(w, http.StatusForbidden, "Not signed in", "Your session has ended. Sign in, then vote again.")
		return
	}
	if err != nil {
		p.unavailable(w, err)
		return
	}
	if !p.checkPost(w, r, se) {
		return
	}
	f := p.cast(r.Context(), r.PathValue("id"), se.principal, r.PostForm.Get("decision"), r.PostForm.Get("comment"))
	p.sessions.update(sid, nil, &f)
	http.Redirect(w, r, ApprovalsPath, http.StatusSeeOther)
}

// cast votes on approval id as pr and says how it went.
func (p *Page) cast(ctx context.Context, id string, pr identity.Principal, decision, comment string) flash {
	if decision != approvals.Approve && decision != approvals.Deny {
		return flash{Text: "A vote is approve or deny."}
	}
	if utf8.RuneCountInString(comment) > approvals.MaxCommentRunes {
		return flash{Text: fmt.Sprintf("A comment is at most %d characters.", approvals.MaxCommentRunes)}
	}
	// Whoever may not see an approval learns nothing of it, as through
	// the API.
	a, err := p.o.Service.Get(ctx, id)
	if errors.Is(err, approvals.ErrNotFound) || err == nil && !approvals.CanSee(&a, pr) {
		return flash{Text: "There is no approval " + id + " that you may see."}
	}
	if err == nil {
		a, err = p.o.Service.Vote(ctx, id, pr, decision, strings.TrimSpace(comment))
	}
	var ref *approvals.Refusal
	switch {
	case errors.As(err, &ref):
		return flash{Text: refusal(ref) + " (" + ref.Code + ")"}
	case err != nil:
		p.o.Logger.Error("approvals page: vote", "approval", id, "err", err)
		return flash{Text: "The vote could not be recorded now; try again in a moment."}
	}
	what := a.Summary
	if what == "" {
		what = a.Method + " " + a.Path
	}
	switch a.State {
	case approvals.StateApproved:
		return flash{OK: true, Text: "Approved " + a.ID + " (" + what + "): the request may go through."}
	case approvals.StateDenied:
		return flash{OK: true, Text: "Denied " + a.ID + " (" + what + ")."}
	default:
		return flash{OK: true, Text: fmt.Sprintf("Your approval of %s is recorded: %d of %d approvals so far.",
			a.ID, countApprovals(a), a.MinApprovals)}
	}
}

func countApprovals(a approvals.Approval) int {
	n := 0
	for _, v := range a.Votes {
		if v.Decision == approvals.Approve {
			n++
		}
	}
	return n
}

// refusal is a refused vote in words an approver reads.
func refusal(ref *approvals.Refusal) string {
	switch ref.Code {
	case "self_approval":
		return "You cannot approve or deny your own request."
	case "not_eligible":
		return "You may not vote on this request: only people in one of its approver groups or roles may."
	case "already_resolved":
		return "This request was already decided, withdrawn or has expired."
	case "already_voted":
		return "You have already voted on this request."
	}
	return ref.Message
}

// checkPost refuses a POST that did not come from the page: its Origin (or,
// without one, its Referer) must be the page's origin and its form must
// carry the session's CSRF token. It parses the form.
func (p *Page) checkPost(w http.ResponseWriter, r *http.Request, se session) bool {
	if !p.sameOrigin(r) {
		p.message(w, http.StatusForbidden, "Refused", "This form was not sent from the approvals page.")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		p.message(w, http.StatusBadRequest, "Refused", "The form is not one the approvals page sends.")
		return false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(se.csrf)) != 1 {
		p.message(w, http.StatusForbidden, "Refused", "The form's security token is missing or stale. Reload the page and try again.")
		return false
	}
	return true
}

// sameOrigin reports whether r was sent from the page's own origin.
func (p *Page) sameOrigin(r *http.Request) bool {
	if p.origin == "" {
		return false
	}
	if o := r.Header.Get("origin"); o != "" {
		return o == p.origin
	}
	u, err := url.Parse(r.Header.Get("referer"))
	return err == nil && u.Host != "" && u.Scheme+"://"+u.Host == p.origin
}

// unavailable answers 503 and logs why.
func (p *Page) unavailable(w http.ResponseWriter, err error) {
	p.o.Logger.Error("approvals page", "err", err)
	p.message(w, http.StatusServiceUnavailable, "Unavailable", "The approvals could not be read now. Try again in a moment.")
}

// message answers with a page that says one thing.
func (p *Page) message(w http.ResponseWriter, status int, heading, text string) {
	p.render(w, status, "message", pageData{Title: heading, Nonce: randomString(16), Heading: heading, Text: text})
}

// render executes template name with the page's Content-Security-Policy:
// nothing but the nonce's inline style and script, requests to the page's
// own origin, forms posted only to it.
func (p *Page) render(w http.ResponseWriter, status int, name string, d pageData) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, d); err != nil {
		p.o.Logger.Error("approvals page: render", "template", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("content-security-policy", "default-src 'none'; script-src 'nonce-"+d.Nonce+"'; style-src 'nonce-"+d.Nonce+
		"'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("content-type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
