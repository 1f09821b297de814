package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
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
	"github.com/custos-dev/custos/policies"
)

// Stages are the per-request stages, one implementation each. A capability
// replaces one of them (in DefaultStages) and touches nothing else.
type Stages struct {
	Identity identity.Verifier
	Inspect  inspect.Inspector
	Policy   policy.Evaluator
	Grants   approval.Grants
	Mask     mask.Engine
	Record   record.Recorder
	// Inject are the upstream credential injectors, by connection name
	// (connections[].credentials); a connection without one sends no
	// credential of Custos'.
	Inject map[string]credentials.Injector
	// Owned are what these stages started and nothing else uses (a policy
	// bundle's poller): closed when the pipeline is replaced.
	Owned []io.Closer
}

// Close closes what the stages own.
func (st Stages) Close() {
	for _, c := range st.Owned {
		_ = c.Close()
	}
}

// DefaultStages are the stages for cfg. Each stage that compiles something
// from the configuration (issuers' keys, policy bundles, masking profiles)
// does it here, once per configuration, so a reload swaps it whole.
func DefaultStages(cfg *config.Config, logger *slog.Logger) (Stages, error) {
	var verifier identity.Verifier = identity.Anonymous{}
	if len(cfg.Identity.Issuers) > 0 {
		v, err := identity.NewOIDC(cfg.Identity, identity.Options{})
		if err != nil {
			return Stages{}, err
		}
		verifier = v
	}
	st := Stages{
		Identity: verifier,
		Inspect:  inspect.NewByKind(),
		Policy:   policy.AllowConnection{},
		Grants:   approval.None{},
		Mask:     mask.None{},
		Record:   record.Log{Logger: logger},
	}
	inj, err := NewInjectors(cfg, credentials.Options{Logger: logger})
	if err != nil {
		return Stages{}, err
	}
	st.Inject = inj
	for _, in := range inj {
		st.Owned = append(st.Owned, in)
	}
	if needsMasking(cfg) {
		w, err := NewMaskStage(cfg)
		if err != nil {
			st.Close()
			return Stages{}, err
		}
		st.Mask = w
		st.Owned = append(st.Owned, closer(w.Close))
	}
	if cfg.Policy.Bundle != "" {
		r, err := NewRegoStage(cfg.Policy, logger)
		if err != nil {
			st.Close()
			return Stages{}, err
		}
		st.Policy = r
		st.Owned = append(st.Owned, r)
	}
	return st, nil
}

// NewRegoStage loads the bundle of pc and follows it. The pipeline built
// with it records each load as a policy_changed event.
func NewRegoStage(pc config.Policy, logger *slog.Logger) (*policy.Rego, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var src policy.Source
	switch b := pc.Bundle; {
	case b == config.BuiltinBundle:
		src = policy.FS(b, policies.Bundle)
	case strings.HasPrefix(b, "https://") || strings.HasPrefix(b, "http://"):
		src = policy.Server(b, nil)
	default:
		src = policy.Dir(b)
	}
	o := policy.RegoOptions{Source: src, PollInterval: pc.PollInterval, Logger: logger, DecisionCache: pc.DecisionCache}
	if pc.DecisionCache == 0 {
		o.DecisionCache = -1 // 0 in the file turns the cache off
	}
	if pc.VerificationKeyFile != "" {
		key, err := os.ReadFile(pc.VerificationKeyFile)
		if err != nil {
			return nil, fmt.Errorf("policy.verification_key_file: %w", err)
		}
		o.Verification = &policy.Verification{Key: key, KeyID: pc.VerificationKeyID, Algorithm: pc.VerificationAlgorithm}
	}
	return policy.NewRego(context.Background(), o)
}

// Pipeline is everything a request is decided and processed with: the
// stages and what was compiled from one configuration. A reload builds a new
// Pipeline; a request in flight keeps the one it started with.
type Pipeline struct {
	cfg    *config.Config
	stages Stages
	conns  connections
	log    *slog.Logger
	// apiBase is the approvals API's base URL (http://HOST:PORT), for the
	// wait and approve links an agent is given; "" for none.
	apiBase string
}

// SetAPIBase sets the base URL of the approvals API the pipeline's
// approval_required replies link to. Call it before the pipeline serves.
func (p *Pipeline) SetAPIBase(base string) { p.apiBase = base }

// approvalLinks adds the approval's wait and approve URLs to extra.
func (p *Pipeline) approvalLinks(id string, extra map[string]any) map[string]any {
	if p.apiBase != "" && id != "" {
		extra["wait_url"] = p.apiBase + "/v1/approvals/" + id + "/wait"
		extra["approve_url"] = p.apiBase + "/v1/approvals/" + id + "/approve"
	}
	return extra
}

// NewPipeline compiles cfg for the stages st; every stage must be set.
// logger receives what the stages cannot report otherwise (a panic).
func NewPipeline(cfg *config.Config, st Stages, logger *slog.Logger) (*Pipeline, error) {
	if cfg == nil {
		return nil, errors.New("pipeline: no configuration")
	}
	if st.Identity == nil || st.Inspect == nil || st.Policy == nil || st.Grants == nil || st.Mask == nil || st.Record == nil {
		return nil, errors.New("pipeline: every stage must be set")
	}
	p := &Pipeline{cfg: cfg, stages: st, conns: indexConnections(cfg), log: logger}
	if f, ok := st.Policy.(interface{ OnChange(func(policy.Change)) }); ok {
		f.OnChange(p.policyChanged)
	}
	return p, nil
}

// RecordConfig records that this pipeline's configuration was loaded (a
// config_changed event); what says how it was loaded ("loaded",
// "reloaded").
func (p *Pipeline) RecordConfig(ctx context.Context, what string) error {
	names := make([]string, len(p.cfg.Connections))
	for i, c := range p.cfg.Connections {
		names[i] = c.Name
	}
	bundle := p.cfg.Policy.Bundle
	if bundle == "" {
		bundle = "none (allow by connection)"
	}
	now := time.Now()
	return p.stages.Record.Record(ctx, record.Event{Kind: record.ConfigChanged, Started: now, Finished: now,
		Detail: fmt.Sprintf("configuration %s: %d connection(s) [%s], %d issuer(s), policy bundle %s, approvals %s",
			what, len(names), strings.Join(names, ", "), len(p.cfg.Identity.Issuers), bundle, p.cfg.Approvals.Mode)})
}

// policyChanged records a bundle load (the first, each new revision, each
// bundle refused) as a policy_changed event.
func (p *Pipeline) policyChanged(c policy.Change) {
	now := time.Now()
	e := record.Event{Kind: record.PolicyChanged, Revision: c.Revision, Started: now, Finished: now,
		Detail: "bundle " + c.Source + " loaded, revision " + c.Revision}
	if c.Previous != "" {
		e.Detail += " (was " + c.Previous + ")"
	}
	if c.Err != nil {
		e.Detail = "bundle " + c.Source + " refused; revision " + c.Revision + " keeps deciding: " + c.Err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkRecordTimeout)
	defer cancel()
	if err := p.stages.Record.Record(ctx, e); err != nil {
		p.logger().Error("record policy_changed", "error", err)
	}
}

// Close closes what the pipeline's stages own; requests still deciding
// with it finish normally.
func (p *Pipeline) Close() { p.stages.Close() }

// Record hands e to the pipeline's record stage (for events outside a
// request: votes, resolutions).
func (p *Pipeline) Record(ctx context.Context, e record.Event) error {
	return p.stages.Record.Record(ctx, e)
}

// Identity is the pipeline's identity stage, for the HTTP API's callers.
func (p *Pipeline) Identity() identity.Verifier { return p.stages.Identity }

// Config is the configuration the pipeline was built from.
func (p *Pipeline) Config() *config.Config { return p.cfg }

// Stages returns the pipeline's stages.
func (p *Pipeline) Stages() Stages { return p.stages }

func (p *Pipeline) logger() *slog.Logger {
	if p.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.log
}
