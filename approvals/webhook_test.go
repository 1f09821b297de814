package approvals

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type hookCall struct {
	event   string
	payload map[string]any
	raw     string
}

// A webhook receiver as an integrator writes one: it checks the signature
// and reads the Slack-compatible payload. Its first delivery fails, so the
// notifier must retry.
func TestWebhooksAreSignedAndRetried(t *testing.T) {
	secret := []byte("s3cret")
	calls := make(chan hookCall, 10)
	var tries atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := VerifySignature(secret, r.Header.Get(SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err := VerifySignature([]byte("wrong"), r.Header.Get(SignatureHeader), body, time.Now(), 5*time.Minute); err == nil {
			t.Error("a wrong secret verified")
		}
		if tries.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("payload: %v", err)
		}
		calls <- hookCall{event: r.Header.Get("x-custos-event"), payload: p, raw: string(body)}
	}))
	defer srv.Close()

	f := newFixture(t, stores()["file"](t)(t), func(o *Options) {
		o.Webhooks = []Webhook{{URL: srv.URL, Secret: secret}}
	})
	f.svc.hooks.backoff = time.Millisecond
	id := f.open(t, request())
	c := <-calls
	if c.event != "approval_requested" || !strings.Contains(c.payload["text"].(string), "DELETE FROM orders") ||
		!strings.Contains(c.payload["text"].(string), id) {
		t.Fatalf("request notification: %s %v", c.event, c.payload["text"])
	}
	fields := c.payload["attachments"].([]any)[0].(map[string]any)["fields"].([]any)
	if len(fields) < 5 || fields[0].(map[string]any)["title"] != "Requester" {
		t.Fatalf("fields: %v", fields)
	}
	if a := c.payload["custos"].(map[string]any)["approval"].(map[string]any); a["id"] != id || a["state"] != "pending" {
		t.Fatalf("custos block: %v", a)
	}
	f.vote(t, id, alice, Approve)
	c = <-calls
	if c.event != "approval_resolved" || !strings.Contains(c.payload["text"].(string), "approved") {
		t.Fatalf("resolution notification: %s %v", c.event, c.payload["text"])
	}
	// Nothing of the request beyond what the approver sees: no token, no
	// header, no body.
	for _, never := range []string{"authorization", "bearer", "cookie"} {
		if strings.Contains(strings.ToLower(c.raw), never) {
			t.Errorf("the webhook carries %q", never)
		}
	}
}

func TestSignatureRefusesTamperingAndReplays(t *testing.T) {
	secret, body := []byte("k"), []byte(`{"text":"x"}`)
	now := time.Unix(1_900_000_000, 0)
	h := Sign(secret, now.Unix(), body)
	if err := VerifySignature(secret, h, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		h    string
		body []byte
		at   time.Time
	}{
		"body changed":   {h, []byte(`{"text":"y"}`), now},
		"time changed":   {strings.Replace(h, "t=1900000000", "t=1900000001", 1), body, now},
		"replayed later": {h, body, now.Add(time.Hour)},
		"malformed":      {"v1=abc", body, now},
	} {
		if err := VerifySignature(secret, c.h, c.body, c.at, time.Minute); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestWebhookQueueDropsWhenFull(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	var logs syncBuffer
	f := newFixture(t, stores()["file"](t)(t), func(o *Options) {
		o.Webhooks = []Webhook{{URL: srv.URL, Secret: []byte("k")}}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	// The request path never waits on a webhook: far more requests than
	// the queue holds all open at once.
	for i := range queueSize + 50 {
		r := request()
		r.Fingerprint = "fp-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		f.open(t, r)
	}
	if !strings.Contains(logs.String(), "notification dropped") {
		t.Fatal("a full queue dropped nothing, or silently")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
