package approvals

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SignatureHeader carries a webhook body's signature:
// t=UNIX,v1=HEX(HMAC-SHA256(secret, t + "." + body)).
const SignatureHeader = "X-Custos-Signature"

// Webhook is one approvals.webhooks[] entry.
type Webhook struct {
	URL string
	// Secret keys the signature; from a file or an environment variable,
	// never inline (LoadSecret).
	Secret []byte
}

// LoadSecret reads a webhook secret from file (surrounding white space
// dropped) or, when file is "", from environment variable env.
func LoadSecret(file, env string) ([]byte, error) {
	var s string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("webhook secret: %w", err)
		}
		s = string(b)
	case env != "":
		s = os.Getenv(env)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("webhook secret: empty; give secret_file or secret_env")
	}
	return []byte(s), nil
}

// Sign is the SignatureHeader value for body sent at unix time t.
func Sign(secret []byte, t int64, body []byte) string {
	ts := strconv.FormatInt(t, 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks header against body for a receiver: the HMAC
// must match and t must be within tolerance of now, so a captured
// delivery cannot be replayed later.
func VerifySignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, kv := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("signature header malformed")
	}
	want := Sign(secret, t, body)
	if !hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig)) {
		return errors.New("signature does not match")
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || -d > tolerance {
		return errors.New("signature timestamp out of tolerance")
	}
	return nil
}

// Webhook events.
const (
	hookRequested = "approval_requested"
	hookResolved  = "approval_resolved"
)

// queueSize bounds each webhook's queue: a webhook that cannot keep up
// loses notifications (each drop logged), never slows a request.
const queueSize = 256

// notifier posts to each webhook from a goroutine of its own, off the
// request path.
type notifier struct {
	ctx     context.Context
	log     *slog.Logger
	client  *http.Client
	queues  []chan delivery
	hooks   []Webhook
	wg      sync.WaitGroup
	backoff time.Duration // first retry's delay; doubled each time
	tries   int
}

type delivery struct {
	event string
	body  []byte
}

func newNotifier(ctx context.Context, hooks []Webhook, log *slog.Logger) (*notifier, error) {
	n := &notifier{ctx: ctx, log: log, client: &http.Client{Timeout: 10 * time.Second},
		hooks: hooks, backoff: 500 * time.Millisecond, tries: 6}
	for _, h := range hooks {
		u, err := url.Parse(h.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("webhook %q: not an http(s) URL", h.URL)
		}
		if len(h.Secret) == 0 {
			return nil, fmt.Errorf("webhook %s: no secret", u.Redacted())
		}
	}
	for i := range hooks {
		q := make(chan delivery, queueSize)
		n.queues = append(n.queues, q)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.run(i, q)
		}()
	}
	return n, nil
}

// send queues a notification of event about a to every webhook.
func (n *notifier) send(event string, a Approval) {
	if len(n.queues) == 0 {
		return
	}
	body, err := json.Marshal(hookPayload(event, a))
	if err != nil {
		n.log.Error("approvals: webhook payload", "err", err)
		return
	}
	for i, q := range n.queues {
		select {
		case q <- delivery{event: event, body: body}:
		default:
			n.log.Warn("approvals: webhook queue full; notification dropped",
				"webhook", redactURL(n.hooks[i].URL), "event", event, "approval", a.ID)
		}
	}
}

func (n *notifier) wait() { n.wg.Wait() }

func (n *notifier) run(i int, q chan delivery) {
	h := n.hooks[i]
	for {
		select {
		case <-n.ctx.Done():
			return
		case d := <-q:
			n.deliver(h, d)
		}
	}
}

// deliver posts d, retrying with backoff on a network error, a 429 or a
// 5xx; another 4xx is final.
func (n *notifier) deliver(h Webhook, d delivery) {
	wait := n.backoff
	for try := 1; ; try++ {
		status, err := n.post(h, d)
		if err == nil && status < 300 {
			return
		}
		final := err == nil && status < 500 && status != http.StatusTooManyRequests
		if final || try == n.tries {
			n.log.Warn("approvals: webhook not delivered", "webhook", redactURL(h.URL),
				"event", d.event, "status", status, "err", err, "tries", try)
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (n *notifier) post(h Webhook, d delivery) (int, error) {
	req, err := http.NewRequestWithContext(n.ctx, http.MethodPost, h.URL, bytes.NewReader(d.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("user-agent", "custos-approvals")
	req.Header.Set("x-custos-event", d.event)
	req.Header.Set(SignatureHeader, Sign(h.Secret, time.Now().Unix(), d.body))
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// hookPayload is Slack-compatible (text, and attachments with fields) with
// the approval as the page shows it under "custos": the masked summary and
// details, never raw request values or credentials.
func hookPayload(event string, a Approval) map[string]any {
	var text, color string
	switch {
	case event == hookRequested:
		text = fmt.Sprintf("Approval requested by %s on %s: %s (rule %s). `custos approvals approve %s`",
			a.Requester, a.Connection, a.Summary, a.Rule, a.ID)
		color = "warning"
	default:
		text = fmt.Sprintf("Approval %s %s: %s by %s on %s", a.ID, a.State, a.Summary, a.Requester, a.Connection)
		color = map[string]string{StateApproved: "good", StateDenied: "danger"}[a.State]
	}
	fields := []map[string]any{
		{"title": "Requester", "value": a.Requester.String(), "short": true},
		{"title": "Connection", "value": a.Connection, "short": true},
		{"title": "Rule", "value": a.Rule, "short": true},
		{"title": "Risk", "value": a.Risk, "short": true},
		{"title": "State", "value": a.State, "short": true},
		{"title": "Expires", "value": a.Expires.UTC().Format(time.RFC3339), "short": true},
	}
	if a.Details != "" {
		fields = append(fields, map[string]any{"title": "Details", "value": a.Details, "short": false})
	}
	if a.ResolvedBy != "" {
		fields = append(fields, map[string]any{"title": "Resolved by", "value": a.ResolvedBy, "short": true})
	}
	return map[string]any{
		"text":        text,
		"attachments": []map[string]any{{"fallback": text, "color": color, "fields": fields}},
		"custos":      map[string]any{"event": event, "approval": viewOf(a)},
	}
}
