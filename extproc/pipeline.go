package extproc

import (
	"errors"
	"log/slog"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/inspect"
	"github.com/custos-dev/custos/filters/mask"
	"github.com/custos-dev/custos/filters/policy"
	"github.com/custos-dev/custos/filters/record"
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
	return Stages{
		Identity: verifier,
		Inspect:  inspect.HTTP{},
		Policy:   policy.AllowConnection{},
		Grants:   approval.None{},
		Mask:     mask.None{},
		Record:   record.Log{Logger: logger},
	}, nil
}

// Pipeline is everything a request is decided and processed with: the
// stages and what was compiled from one configuration. A reload builds a new
// Pipeline; a request in flight keeps the one it started with.
type Pipeline struct {
	cfg    *config.Config
	stages Stages
	conns  connections
	log    *slog.Logger
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
	return &Pipeline{cfg: cfg, stages: st, conns: indexConnections(cfg), log: logger}, nil
}

// Config is the configuration the pipeline was built from.
func (p *Pipeline) Config() *config.Config { return p.cfg }

func (p *Pipeline) logger() *slog.Logger {
	if p.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.log
}
