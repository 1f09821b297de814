package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/approvals"
	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/identity"
)

// approvalsServer is the real approvals API on loopback over an embedded
// store; a token names its principal.
func approvalsServer(t *testing.T) (*approvals.Service, string) {
	t.Helper()
	st, err := approvals.OpenFile(filepath.Join(t.TempDir(), "approvals.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := approvals.New(approvals.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	people := map[string]identity.Principal{
		"agent-token": {Issuer: "https://idp", Subject: "agent", Kind: identity.KindWorkload},
		"alice-token": {Issuer: "https://idp", Subject: "alice", Kind: identity.KindHuman, GroupNames: []string{"dba"}},
		"bob-token":   {Issuer: "https://idp", Subject: "bob", Kind: identity.KindHuman, GroupNames: []string{"dba"}},
	}
	h := approvals.NewHandler(svc, func(_ context.Context, bearer string) (identity.Principal, error) {
		p, ok := people[bearer]
		if !ok {
			return identity.Principal{}, &identity.Error{Check: identity.CheckSignature}
		}
		return p, nil
	})
	mux := http.NewServeMux()
	mux.Handle(approvals.ListPath, h)
	mux.Handle(approvals.PathPrefix, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return svc, srv.URL
}

func openApproval(t *testing.T, svc *approvals.Service, fp string, minApprovals int) string {
	t.Helper()
	p, err := svc.Request(context.Background(), approval.Request{
		Requester:  identity.Principal{Issuer: "https://idp", Subject: "agent", Kind: identity.KindWorkload},
		Connection: "warehouse", Summary: "DROP TABLE orders", Fingerprint: fp, Rule: "destructive-sql",
		Approvers: []string{"dba"}, MinApprovals: minApprovals, Scope: approval.ScopeRequest, Risk: "destructive",
	})
	if err != nil {
		t.Fatal(err)
	}
	return p.ID
}

func TestApprovalsCLI(t *testing.T) {
	svc, url := approvalsServer(t)
	id := openApproval(t, svc, "fp-1", 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	as := func(token string, args ...string) (string, string, error) {
		return run(ctx, append([]string{"approvals", "--server", url, "--token", token}, args...)...)
	}

	out, _, err := as("alice-token", "list", "--status", "pending")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "DROP TABLE orders") || !strings.Contains(out, "https://idp/agent") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, _, err = as("alice-token", "show", id)
	var shown map[string]any
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown["id"] != id || shown["state"] != "pending" {
		t.Fatalf("show: %v\n%s", err, out)
	}
	// The requester cannot approve its own request; the refusal is one
	// line with the code, and the token is never printed.
	_, _, err = as("agent-token", "approve", id)
	if err == nil || !strings.Contains(err.Error(), "not_eligible") || strings.Contains(err.Error(), "agent-token") {
		t.Fatalf("agent approves: %v", err)
	}
	if _, _, err = as("nobody-token", "list"); err == nil || !strings.Contains(err.Error(), "401 unauthenticated") {
		t.Fatalf("bad token: %v", err)
	}

	// The agent waits (token from CUSTOS_TOKEN) while an approver approves.
	t.Setenv("CUSTOS_TOKEN", "agent-token")
	waited := make(chan error, 1)
	var waitOut string
	go func() {
		var err error
		waitOut, _, err = run(ctx, "approvals", "--server", url, "wait", id, "--timeout", "1m")
		waited <- err
	}()
	out, _, err = as("alice-token", "approve", id, "--comment", "checked the ticket")
	if err != nil || strings.TrimSpace(out) != id+" approved" {
		t.Fatalf("approve: %v %q", err, out)
	}
	if err := <-waited; err != nil || strings.TrimSpace(waitOut) != id+" approved" {
		t.Fatalf("wait: %v %q", err, waitOut)
	}
	if _, _, err = as("bob-token", "deny", id, "--reason", "late"); err == nil || !strings.Contains(err.Error(), "409 already_resolved") {
		t.Fatalf("deny after approval: %v", err)
	}
	out, _, err = as("agent-token", "revoke", id)
	if err != nil || strings.TrimSpace(out) != id+" revoked" {
		t.Fatalf("revoke: %v %q", err, out)
	}

	denied := openApproval(t, svc, "fp-2", 2)
	if out, _, err = as("bob-token", "deny", denied, "--reason", "not in a change window"); err != nil || strings.TrimSpace(out) != denied+" denied" {
		t.Fatalf("deny: %v %q", err, out)
	}
	if out, _, err = run(ctx, "approvals", "--server", url, "wait", denied); err == nil || strings.TrimSpace(out) != denied+" denied" {
		t.Fatalf("wait on a denied approval: %v %q", err, out)
	}
}

func TestApprovalsCLIUsage(t *testing.T) {
	t.Setenv("CUSTOS_TOKEN", "")
	if _, _, err := run(context.Background(), "approvals", "list"); err == nil || !strings.Contains(err.Error(), "CUSTOS_TOKEN") {
		t.Fatalf("no token: %v", err)
	}
	if _, _, err := run(context.Background(), "approvals", "--token", "x", "--server", "ftp://h", "list"); err == nil {
		t.Fatal("a non-http server was accepted")
	}
}
