package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/audit/ship"
)

// auditLog is a real log written by audit.Open: two sessions of the same
// name by two principals, with decisions, an approval, masking, an abort and
// an authentication failure.
type auditLog struct {
	dir, keyFile, vkey string
	// sessionA is agent A's custos.session_id; pathsA its requests' paths
	// in order.
	sessionA string
	pathsA   []string
}

const (
	principalA = "https://idp.example/etl-agent"
	principalB = "https://idp.example/other-agent"
)

func newAuditLog(t *testing.T) auditLog {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "keys", "audit.key")
	key, err := audit.LoadOrCreateSigningKey(keyFile, "replica-1", true)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := audit.Open(audit.Options{Dir: dir, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	n := 0
	actorA := audit.Actor{UID: principalA, Type: "workload", Groups: []string{"agents", "readers"}}
	actorB := audit.Actor{UID: principalB, Type: "workload", Groups: []string{"agents"}}
	add := func(e audit.Event) {
		t.Helper()
		e.Time = base.Add(time.Duration(n) * time.Second)
		n++
		if e.Session == "" && e.Kind != audit.PolicyChanged && e.Kind != audit.ApprovalVoted {
			e.Session = "nightly"
		}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	a := func(req string, e audit.Event) audit.Event {
		e.SessionID, e.RequestID, e.Connection, e.Actor = "sess-A", req, "warehouse", actorA
		return e
	}
	get := func(p string) *audit.HTTPRequest { return &audit.HTTPRequest{Method: "GET", Path: p} }
	dec := func(allow bool, reasons ...string) *audit.DecisionInfo {
		return &audit.DecisionInfo{ID: "d", Allow: allow, Reasons: reasons, PolicyRevision: "rev-7"}
	}

	add(audit.Event{Kind: audit.PolicyChanged, Change: &audit.Change{Revision: "rev-7", Previous: "rev-6", Source: "./policies"}})
	add(a("r-a1", audit.Event{Kind: audit.Decision, Request: get("/customers/1"), Decision: dec(true, "readers may read")}))
	add(a("r-a1", audit.Event{Kind: audit.Response, Request: get("/customers/1"), Response: &audit.HTTPResponse{Code: 200},
		Masking: &audit.Masking{Profile: "pci", Counts: map[string]int{"card": 3, "iban": 1}}, BodySHA256: strings.Repeat("ab", 32)}))
	del := &audit.HTTPRequest{Method: "DELETE", Path: "/customers/7"}
	add(a("r-a2", audit.Event{Kind: audit.Decision, Request: del, Decision: dec(false, "delete needs a DBA")}))
	add(a("r-a2", audit.Event{Kind: audit.ApprovalRequested, Request: del, Approval: &audit.Approval{ID: "apr-1", State: "pending", Rule: "dba-delete", Approvers: []string{"dba"}}}))
	// Agent B's session has the same name, interleaved.
	add(audit.Event{Kind: audit.Decision, SessionID: "sess-B", RequestID: "r-b1", Connection: "vault", Actor: actorB, Request: get("/secrets/x"), Decision: dec(true)})
	// The approver votes outside the agent's session.
	add(audit.Event{Kind: audit.ApprovalVoted, Actor: audit.Actor{UID: "https://idp.example/alice", Type: "human"}, Approval: &audit.Approval{ID: "apr-1", State: "pending", Voter: "alice@bank.example", Vote: "approve"}})
	add(a("r-a2", audit.Event{Kind: audit.ApprovalResolved, Request: del, Approval: &audit.Approval{ID: "apr-1", State: "approved"}}))
	add(a("r-a2", audit.Event{Kind: audit.Response, Request: del, Response: &audit.HTTPResponse{Code: 204}}))
	add(a("r-a3", audit.Event{Kind: audit.Decision, Request: &audit.HTTPRequest{Method: "POST", Path: "/admin/users"}, Decision: dec(false, "admin is not for agents")}))
	add(audit.Event{Kind: audit.Response, SessionID: "sess-B", RequestID: "r-b1", Connection: "vault", Actor: actorB, Request: get("/secrets/x"), Response: &audit.HTTPResponse{Code: 200}})
	add(a("r-a4", audit.Event{Kind: audit.Decision, Request: get("/customers/2"), Decision: dec(true)}))
	add(a("r-a4", audit.Event{Kind: audit.Aborted, Request: get("/customers/2"), Detail: "client went away"}))
	add(a("r-a5", audit.Event{Kind: audit.AuthFailed, Request: get("/customers/3"), Detail: "token expired"}))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return auditLog{dir: dir, keyFile: keyFile, vkey: key.VerifierKey(), sessionA: "sess-A",
		pathsA: []string{"/customers/1", "/customers/7", "/admin/users", "/customers/2", "/customers/3"}}
}

func isUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue)
}

// copyDir copies a log directory, to tamper with the copy.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestAuditKeyPrintsTheVerifierKeyOnly(t *testing.T) {
	lg := newAuditLog(t)
	out, _, err := run(context.Background(), "audit", "key", "--key-file", lg.keyFile)
	if err != nil || out != lg.vkey+"\n" {
		t.Fatalf("audit key: %q, %v", out, err)
	}
	secret, _ := os.ReadFile(lg.keyFile)
	if strings.Contains(out, "PRIVATE") || strings.Contains(out, strings.TrimSpace(string(secret))) {
		t.Fatal("audit key printed the signing key")
	}
	if _, _, err := run(context.Background(), "audit", "key"); !isUsage(err) {
		t.Fatalf("no flags: %v", err)
	}
	cfg := writeFile(t, "c.yaml", "audit:\n  dir: "+lg.dir+"\n  signing_key_file: "+lg.keyFile+"\n")
	if out, _, err := run(context.Background(), "audit", "key", "--config", cfg); err != nil || out != lg.vkey+"\n" {
		t.Fatalf("--config: %q %v", out, err)
	}
	cfg = writeFile(t, "c.yaml", "audit:\n  dir: "+lg.dir+"\n")
	if _, _, err := run(context.Background(), "audit", "key", "--config", cfg); err == nil || !strings.Contains(err.Error(), "signing_key_file") {
		t.Fatalf("--config without the key: %v", err)
	}
	// A signing key given as --key is refused without being quoted.
	_, _, err = run(context.Background(), "audit", "verify", "--dir", lg.dir, "--key", "@"+lg.keyFile)
	if !isUsage(err) || strings.Contains(err.Error(), strings.TrimSpace(string(secret))) || !strings.Contains(err.Error(), "signing key") {
		t.Fatalf("signing key as --key: %v", err)
	}
}

func TestAuditVerify(t *testing.T) {
	lg := newAuditLog(t)
	ctx := context.Background()
	vfile := writeFile(t, "replica-1.vkey", lg.vkey+"\n")

	for _, key := range []string{lg.vkey, "@" + vfile} {
		out, _, err := run(ctx, "audit", "verify", "--dir", lg.dir, "--key", key)
		if err != nil {
			t.Fatalf("verify --key %s: %v", key, err)
		}
		for _, want := range []string{"log replica-1: intact", "14 events", "covers 14 of 14 events", "root ", keyFingerprint(lg.vkey)} {
			if !strings.Contains(out, want) {
				t.Errorf("summary lacks %q:\n%s", want, out)
			}
		}
	}

	t.Run("flipped byte", func(t *testing.T) {
		dir := copyDir(t, lg.dir)
		r, err := audit.OpenReader(nil, dir)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := r.Read(5)
		if err != nil {
			t.Fatal(err)
		}
		seg := filepath.Join(dir, "seg-00000000000000000000")
		b, _ := os.ReadFile(seg)
		at := bytes.Index(b, rec)
		if at < 0 {
			t.Fatal("event 5 not found in its segment")
		}
		at += bytes.Index(rec, []byte("/secrets/x")) + 3
		b[at] ^= 0x01
		if err := os.WriteFile(seg, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err = run(ctx, "audit", "verify", "--dir", dir, "--key", lg.vkey)
		if err == nil || isUsage(err) || !strings.Contains(err.Error(), "replica-1") || !strings.Contains(err.Error(), "index 5") {
			t.Fatalf("tampered log: %v", err)
		}
	})

	t.Run("another key", func(t *testing.T) {
		other, _, err := audit.GenerateSigningKey("replica-1")
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = run(ctx, "audit", "verify", "--dir", lg.dir, "--key", other.VerifierKey())
		if err == nil || !strings.Contains(err.Error(), "NOT intact") {
			t.Fatalf("verified with another key: %v", err)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, args := range [][]string{
			{"audit", "verify", "--key", lg.vkey},
			{"audit", "verify", "--dir", lg.dir},
			{"audit", "verify", "--dir", lg.dir, "--key", "not-a-key"},
			{"audit", "verify", "--dir", lg.dir, "--key", "@/nonexistent/vkey"},
		} {
			if _, _, err := run(ctx, args...); !isUsage(err) {
				t.Errorf("%v: %v, want a usage error", args, err)
			}
		}
		if _, _, err := run(ctx, "audit", "verify", "--dir", t.TempDir(), "--key", lg.vkey); err == nil || !strings.Contains(err.Error(), "not a log directory") {
			t.Errorf("empty dir: %v", err)
		}
	})

	t.Run("kafka unreachable", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, _, err := run(ctx, "audit", "verify", "--kafka", "127.0.0.1:1", "--key", lg.vkey)
		if err == nil || !strings.Contains(err.Error(), "kafka 127.0.0.1:1") {
			t.Fatalf("--kafka: %v", err)
		}
	})
}

func TestAuditProofRoundTrip(t *testing.T) {
	lg := newAuditLog(t)
	ctx := context.Background()
	out, stderr, err := run(ctx, "audit", "proof", "--dir", lg.dir, "--log", "replica-1", "--index", "3", "--key", lg.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "verified offline") {
		t.Errorf("stderr: %q", stderr)
	}
	var p audit.Proof
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("not a proof: %v\n%s", err, out)
	}
	if e, _, err := audit.VerifyProof(&p, lg.vkey); err != nil || e.Index != 3 || e.RequestID != "r-a2" {
		t.Fatalf("proof: %+v %v", e, err)
	}
	// Without --key: the same proof, nothing claimed.
	out2, stderr, err := run(ctx, "audit", "proof", "--dir", lg.dir, "--index", "3")
	if err != nil || out2 != out || stderr != "" {
		t.Fatalf("proof without --key: %v %q", err, stderr)
	}

	saved := writeFile(t, "proof.json", out)
	got, _, err := run(ctx, "audit", "proof", "--verify", saved, "--key", lg.vkey)
	if err != nil || !strings.Contains(got, "proof verified: event 3 of log replica-1") || !strings.Contains(got, keyFingerprint(lg.vkey)) {
		t.Fatalf("--verify: %q %v", got, err)
	}

	tampered := p
	tampered.Event = bytes.Replace(p.Event, []byte("/customers/7"), []byte("/customers/8"), 1)
	tb, _ := json.Marshal(&tampered)
	other, _, _ := audit.GenerateSigningKey("replica-1")
	for name, c := range map[string]struct{ file, key string }{
		"event edited": {writeFile(t, "t.json", string(tb)), lg.vkey},
		"another key":  {saved, other.VerifierKey()},
		"not JSON":     {writeFile(t, "x.json", "hello"), lg.vkey},
	} {
		if _, _, err := run(ctx, "audit", "proof", "--verify", c.file, "--key", c.key); err == nil || isUsage(err) {
			t.Errorf("%s: %v, want a verification failure", name, err)
		}
	}

	for _, args := range [][]string{
		{"audit", "proof", "--dir", lg.dir},
		{"audit", "proof", "--index", "3"},
		{"audit", "proof", "--dir", lg.dir, "--index", "abc"},
		{"audit", "proof", "--dir", lg.dir, "--index", "-2"},
		{"audit", "proof", "--verify", saved},
		{"audit", "proof", "--verify", saved, "--key", lg.vkey, "--index", "3"},
	} {
		if _, _, err := run(ctx, args...); !isUsage(err) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	if _, _, err := run(ctx, "audit", "proof", "--dir", lg.dir, "--index", "99"); err == nil || !strings.Contains(err.Error(), "index 99 is not in the log") {
		t.Errorf("index past the end: %v", err)
	}
	if _, _, err := run(ctx, "audit", "proof", "--dir", lg.dir, "--index", "1", "--log", "replica-2"); err == nil || !strings.Contains(err.Error(), `not "replica-2"`) {
		t.Errorf("wrong --log: %v", err)
	}
}

func TestAuditReplay(t *testing.T) {
	lg := newAuditLog(t)
	ctx := context.Background()
	for _, args := range [][]string{
		{"--session", lg.sessionA},
		{"--session", "nightly", "--principal", principalA},
	} {
		out, _, err := run(ctx, append([]string{"audit", "replay", "--dir", lg.dir}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		last := -1
		for _, p := range lg.pathsA {
			i := strings.Index(out, " "+p+" ")
			if i < 0 || i < last {
				t.Fatalf("%v: %s missing or out of order:\n%s", args, p, out)
			}
			last = i
		}
		for _, want := range []string{"decision denied: delete needs a DBA", "approval apr-1 requested by rule dba-delete",
			"alice@bank.example voted approve", "approval apr-1 approved", "response 204", "masked card=3, iban=1 (profile pci)",
			"aborted: client went away", "authentication failed: token expired", "[blocked; request r-a3]", principalA} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: timeline lacks %q:\n%s", args, want, out)
			}
		}
		if strings.Contains(out, "/secrets/x") || strings.Contains(out, principalB) {
			t.Errorf("%v: the other session leaked in:\n%s", args, out)
		}
	}

	out, _, err := run(ctx, "audit", "replay", "--dir", lg.dir, "--session", lg.sessionA, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var s sessionView
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	var ids, outcomes []string
	for _, r := range s.Requests {
		ids = append(ids, r.RequestID)
		outcomes = append(outcomes, r.Outcome)
	}
	if strings.Join(ids, ",") != "r-a1,r-a2,r-a3,r-a4,r-a5" || strings.Join(outcomes, ",") != "allowed,approved,blocked,aborted,auth_failed" {
		t.Fatalf("requests %v outcomes %v", ids, outcomes)
	}
	if v := s.Requests[1].Approvals; len(v) != 1 || len(v[0].Votes) != 1 || v[0].Votes[0].Voter != "alice@bank.example" {
		t.Fatalf("approvals %+v", v)
	}
	if m := s.Requests[0].Masked; m["card"] != 3 || m["iban"] != 1 {
		t.Fatalf("masked %v", m)
	}

	_, _, err = run(ctx, "audit", "replay", "--dir", lg.dir, "--session", "nightly")
	if err == nil || !strings.Contains(err.Error(), principalA) || !strings.Contains(err.Error(), principalB) || !strings.Contains(err.Error(), "--principal") {
		t.Errorf("ambiguous name: %v", err)
	}
	if _, _, err := run(ctx, "audit", "replay", "--dir", lg.dir, "--session", "nope"); err == nil || !strings.Contains(err.Error(), `no session "nope"`) {
		t.Errorf("unknown session: %v", err)
	}
	for _, args := range [][]string{{"audit", "replay", "--session", "x"}, {"audit", "replay", "--dir", lg.dir}} {
		if _, _, err := run(ctx, args...); !isUsage(err) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

func TestAuditReport(t *testing.T) {
	lg := newAuditLog(t)
	ctx := context.Background()

	md, _, err := run(ctx, "audit", "report", "--dir", lg.dir, "--session", lg.sessionA, "--key", lg.vkey)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range append([]string{
		"## 1. Authorization", "## 2. Real-time control", "## 3. Immutable evidence",
		principalA, "https://idp.example", "etl-agent", "agents, readers", "`rev-7`",
		"admin is not for agents", "approved by alice@bank.example", "card=3, iban=1",
		"Checkpoint: size 14", "signature verified", keyFingerprint(lg.vkey), "client went away", "token expired",
	}, lg.pathsA...) {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "/secrets/x") || strings.Contains(md, "FAILED") {
		t.Errorf("report:\n%s", md)
	}
	// The proofs in the Markdown are complete and check offline.
	proofs := 0
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, `{"log_id"`) {
			continue
		}
		var p audit.Proof
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatal(err)
		}
		if _, _, err := audit.VerifyProof(&p, lg.vkey); err != nil {
			t.Fatal(err)
		}
		proofs++
	}
	if proofs != 11 {
		t.Errorf("%d proofs in the Markdown, want 11 (session A's 10 events and the vote)", proofs)
	}

	js, _, err := run(ctx, "audit", "report", "--dir", lg.dir, "--session", lg.sessionA, "--key", lg.vkey, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatal(err)
	}
	ev := rep.Evidence
	if ev.Checkpoint == nil || ev.Checkpoint.Size != 14 || !ev.Checkpoint.SignatureVerified || len(ev.Proofs) != 11 || ev.KeyFingerprints[0] != keyFingerprint(lg.vkey) {
		t.Fatalf("evidence %+v", ev)
	}
	for _, p := range ev.Proofs {
		if !p.Verified || p.Proof == nil {
			t.Fatalf("proof %d not verified: %s", p.Index, p.Error)
		}
		if _, cp, err := audit.VerifyProof(p.Proof, lg.vkey); err != nil || cp.Size != 14 {
			t.Fatalf("proof %d: %v", p.Index, err)
		}
	}
	c := rep.Control
	if c.Requests != 5 || len(c.Blocked) != 1 || c.Blocked[0].Path != "/admin/users" || c.Masked["card"] != 3 || c.Masked["iban"] != 1 {
		t.Fatalf("control %+v", c)
	}
	if len(c.Approvals) != 1 || c.Approvals[0].State != "approved" || len(c.Approvals[0].ApprovedBy) != 1 || c.Approvals[0].ApprovedBy[0] != "alice@bank.example" {
		t.Fatalf("approvals %+v", c.Approvals)
	}
	if a := rep.Authorization; len(a.Principals) != 1 || a.Principals[0].Issuer != "https://idp.example" || len(a.Resources) != 5 {
		t.Fatalf("authorization %+v", a)
	}

	// A period: both sessions and the policy load; without --key it says the
	// signature was not checked.
	js, _, err = run(ctx, "audit", "report", "--dir", lg.dir, "--from", "2026-03-01T09:00:00Z", "--to", "2026-03-01T11:00:00Z", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	rep = report{}
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Sessions) != 2 || len(rep.Authorization.Changes) != 1 || rep.Evidence.Checkpoint.SignatureVerified || len(rep.Evidence.Proofs) != 14 || !strings.Contains(rep.Evidence.Statement, "NOT checked") {
		t.Fatalf("period report: %d sessions, %d changes, evidence %+v", len(rep.Sessions), len(rep.Authorization.Changes), rep.Evidence)
	}

	for _, args := range [][]string{
		{"--session", lg.sessionA},
		{"--dir", lg.dir},
		{"--dir", lg.dir, "--from", "yesterday", "--to", "2026-03-01T11:00:00Z"},
		{"--dir", lg.dir, "--from", "2026-03-01T11:00:00Z", "--to", "2026-03-01T10:00:00Z"},
		{"--dir", lg.dir, "--from", "2026-03-01T10:00:00Z"},
		{"--dir", lg.dir, "--session", lg.sessionA, "--from", "2026-03-01T10:00:00Z", "--to", "2026-03-01T11:00:00Z"},
		{"--dir", lg.dir, "--session", lg.sessionA, "--format", "pdf"},
	} {
		if _, _, err := run(ctx, append([]string{"audit", "report"}, args...)...); !isUsage(err) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	if _, _, err := run(ctx, "audit", "report", "--dir", lg.dir, "--session", "nope"); err == nil || !strings.Contains(err.Error(), `no session "nope"`) {
		t.Errorf("unknown session: %v", err)
	}
	if _, _, err := run(ctx, "audit", "report", "--dir", lg.dir, "--from", "2027-01-01T00:00:00Z", "--to", "2027-01-02T00:00:00Z"); err == nil || !strings.Contains(err.Error(), "no event") {
		t.Errorf("empty period: %v", err)
	}
}

func TestAuditVerifyKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topics := ship.Topics{Brokers: c.ListenAddrs()}
	if err := ship.CreateTopics(ctx, topics, ship.TopicSettings{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	key, _, err := audit.GenerateSigningKey("replica-1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := audit.Open(audit.Options{Dir: dir, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := l.Append(ctx, audit.Event{Kind: audit.Decision, SessionID: "s", RequestID: "r", Request: &audit.HTTPRequest{Method: "GET", Path: "/" + strings.Repeat("x", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	s, err := ship.New(l, ship.Options{Dir: dir, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cps, _ := audit.Checkpoints(nil, dir)
	for ev, n := s.Shipped(); ev < 20 || n < int64(len(cps)); ev, n = s.Shipped() {
		if ctx.Err() != nil {
			t.Fatal("the shipper did not drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Close()
	<-done
	l.Close()

	brokers := strings.Join(c.ListenAddrs(), ",")
	out, _, err := run(ctx, "audit", "verify", "--kafka", brokers, "--key", key.VerifierKey())
	if err != nil || !strings.Contains(out, "log replica-1: intact. 20 events") || !strings.Contains(out, "kafka topics") {
		t.Fatalf("--kafka: %v\n%s", err, out)
	}
	out, _, err = run(ctx, "audit", "verify", "--kafka", brokers, "--dir", dir, "--key", key.VerifierKey())
	if err != nil || strings.Count(out, "intact") != 2 {
		t.Fatalf("--kafka --dir: %v\n%s", err, out)
	}
	other, _, _ := audit.GenerateSigningKey("replica-1")
	if _, _, err := run(ctx, "audit", "verify", "--kafka", brokers, "--key", other.VerifierKey()); err == nil || !strings.Contains(err.Error(), "NOT intact") {
		t.Fatalf("--kafka with another key: %v", err)
	}
}
