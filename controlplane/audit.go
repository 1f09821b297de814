package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/audit/ship"
	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/mask"
	"github.com/custos-dev/custos/filters/record"
)

// DefaultLogID names a log whose signing key `custos dev` makes: custos-
// and the host name, so that each replica's log has its own id.
func DefaultLogID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "local"
	}
	var b strings.Builder
	b.WriteString("custos-")
	for _, r := range strings.ToLower(h) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// openAudit opens the audit log when audit.signing_key_file is set, with
// the key there (`custos dev` makes one on first run; `custos serve`
// expects the operator's).
func (cp *ControlPlane) openAudit(cfg *config.Config) error {
	if cfg.Audit.SigningKeyFile == "" {
		return nil
	}
	// The key's name is the log id, whoever made it.
	key, err := audit.LoadSigningKey(cfg.Audit.SigningKeyFile)
	if err != nil {
		return fmt.Errorf("audit.signing_key_file: %w", err)
	}
	o := audit.Options{Dir: cfg.Audit.Dir, Key: key}
	if f := cfg.Audit.PreviousSigningKeyFile; f != "" {
		if o.PreviousKey, err = audit.LoadSigningKey(f); err != nil {
			return fmt.Errorf("audit.previous_signing_key_file: %w", err)
		}
	}
	l, err := audit.Open(o)
	if err != nil {
		return fmt.Errorf("audit.dir: %w", err)
	}
	cp.Audit = l
	cp.auditKey = key
	if k := cfg.Audit.Kafka; k != nil {
		topics := ship.Topics{Brokers: k.Brokers, EventsTopic: k.EventsTopic, CheckpointsTopic: k.CheckpointsTopic}
		if k.TLS != nil {
			tc, err := KafkaTLS(k.TLS)
			if err != nil {
				l.Close()
				return fmt.Errorf("audit.kafka.tls: %w", err)
			}
			topics.TLS = tc
		}
		sh, err := ship.New(l, ship.Options{Dir: cfg.Audit.Dir, Topics: topics, Logger: cp.logger()})
		if err != nil {
			l.Close()
			return fmt.Errorf("audit.kafka: %w", err)
		}
		cp.Shipper = sh
		go func() {
			// Kafka down is not Custos down: the log keeps accepting and the
			// backlog drains when Kafka returns. Run returns at Close.
			if err := sh.Run(context.Background()); err != nil {
				cp.logger().Error("audit shipper stopped", "error", err)
			}
		}()
	}
	return nil
}

// KafkaTLS is the client TLS of audit.kafka.tls (and of `custos audit
// verify --kafka-ca/--kafka-cert`).
func KafkaTLS(t *config.KafkaTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// auditRecorder appends every event to the audit log before handing it to
// the next recorder (the structured log line), and gives the log position
// as the receipt. Under on_failure block (the default, per connection
// overridable) a failed append is the request's failure: no evidence, no
// access; under allow it is logged and the request goes on.
type auditRecorder struct {
	log    *audit.Log
	next   record.Recorder
	cfg    *config.Config
	logger *slog.Logger
}

var _ record.Receipter = (*auditRecorder)(nil)

func (a *auditRecorder) Record(ctx context.Context, e record.Event) error {
	_, err := a.RecordReceipt(ctx, e)
	return err
}

// scrub masks, with profile all, what an event carries of the request in
// text: the path, the action's summary (a statement, a command), the
// reasons (policy quotes the summary) and the detail. Statements are data
// too: a card number in a WHERE clause or a path never enters the log.
func scrub(e record.Event) record.Event {
	e.Path = maskText(e.Path)
	e.Summary = maskText(e.Summary)
	e.Detail = maskText(e.Detail)
	if len(e.Reasons) > 0 {
		r := make([]string, len(e.Reasons))
		for i, s := range e.Reasons {
			r[i] = maskText(s)
		}
		e.Reasons = r
	}
	return e
}

var (
	textMaskerOnce sync.Once
	textMasker     *mask.Native
	textMaskerErr  error
)

// maskText masks s with profile all; text the engine cannot mask is
// replaced whole (never kept unmasked).
func maskText(s string) string {
	if s == "" {
		return s
	}
	textMaskerOnce.Do(func() { textMasker, textMaskerErr = mask.NewNative(mask.NativeOptions{}) })
	if textMaskerErr != nil {
		return "[REDACTED:UNMASKABLE]"
	}
	st, err := textMasker.Open(mask.NewProfile("all"), mask.Body{ContentType: "text/plain"})
	if err != nil {
		return "[REDACTED:UNMASKABLE]"
	}
	defer st.Close()
	out, err := st.Mask([]byte(s), true)
	if err != nil {
		return "[REDACTED:UNMASKABLE]"
	}
	return string(out)
}

func (a *auditRecorder) RecordReceipt(ctx context.Context, e record.Event) (string, error) {
	e = scrub(e)
	pos, err := a.log.Append(ctx, audit.FromRecord(e))
	if err != nil {
		if a.onFailure(e.Connection) == config.OnFailureAllow {
			a.logger.Error("audit append failed; the request goes on (on_failure: allow)", "kind", e.Kind, "request_id", e.RequestID, "error", err)
			return "", a.next.Record(ctx, e)
		}
		return "", fmt.Errorf("audit: %w", err)
	}
	if err := a.next.Record(ctx, e); err != nil {
		a.logger.Warn("record after the audit log", "error", err)
	}
	return pos.String(), nil
}

var _ record.Deferred = (*auditRecorder)(nil)

// RecordDeferred starts the append at once; wait returns when it is
// durable (on_failure applies then).
func (a *auditRecorder) RecordDeferred(e record.Event) func(context.Context) (string, error) {
	type result struct {
		receipt string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		// Bounded like Check's own record; the caller's wait has its own
		// deadline.
		ctx, cancel := context.WithTimeout(context.Background(), deferredRecordTimeout)
		defer cancel()
		r, err := a.RecordReceipt(ctx, e)
		done <- result{r, err}
	}()
	var once sync.Once
	var res result
	return func(ctx context.Context) (string, error) {
		var err error
		once.Do(func() {
			select {
			case res = <-done:
			case <-ctx.Done():
				res = result{err: fmt.Errorf("audit: the decision was not durable in time: %w", ctx.Err())}
			}
		})
		if err == nil {
			err = res.err
		}
		return res.receipt, err
	}
}

// deferredRecordTimeout bounds a deferred append.
const deferredRecordTimeout = 30 * time.Second

func (a *auditRecorder) onFailure(connection string) string {
	if c, ok := a.cfg.Connection(connection); ok && c.AuditOnFailure != "" {
		return c.AuditOnFailure
	}
	return a.cfg.Audit.OnFailure
}
