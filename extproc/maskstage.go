package extproc

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/mask"
	"github.com/custos-dev/custos/filters/mask/engine"
)

// needsMasking reports whether cfg can ask for masking: a masked
// connection, a configured profile or module, or a policy bundle (whose
// decisions may add a profile).
func needsMasking(cfg *config.Config) bool {
	if cfg.Policy.Bundle != "" || len(cfg.Masking.Profiles) > 0 || cfg.Masking.Module != "" {
		return true
	}
	for _, c := range cfg.Connections {
		if c.Masking != "" {
			return true
		}
	}
	return false
}

// NewMaskStage builds the WASM masking engine of cfg: the built-in module
// or masking.module, the configured profiles beside the built-in ones, the
// hmac key from its file or environment variable.
func NewMaskStage(cfg *config.Config) (*mask.WASM, error) {
	m := cfg.Masking
	o := mask.Options{PoolSize: m.PoolSize, CallTimeout: m.CallTimeout, Profiles: map[string]mask.Spec{}}
	if m.Module != "" {
		b, err := os.ReadFile(m.Module)
		if err != nil {
			return nil, fmt.Errorf("masking.module: %w", err)
		}
		o.Module = b
	}
	switch {
	case m.HMACKeyFile != "":
		b, err := os.ReadFile(m.HMACKeyFile)
		if err != nil {
			return nil, fmt.Errorf("masking.hmac_key_file: %w", err)
		}
		o.HMACKey = []byte(strings.TrimSpace(string(b)))
	case m.HMACKeyEnv != "":
		v, ok := os.LookupEnv(m.HMACKeyEnv)
		if !ok || v == "" {
			return nil, fmt.Errorf("masking.hmac_key_env: %s is not set", m.HMACKeyEnv)
		}
		o.HMACKey = []byte(v)
	}
	if len(o.HMACKey) > 0 && len(o.HMACKey) < 16 {
		return nil, fmt.Errorf("masking: the hmac key is %d bytes; use at least 16 random bytes", len(o.HMACKey))
	}
	for name, p := range m.Profiles {
		spec := mask.Spec{BestEffort: p.BestEffort, Config: engine.Config{
			Entities: p.Entities, Operators: p.Operators, AccountFields: p.AccountFields, IgnoreFields: p.IgnoreFields,
		}}
		for _, f := range p.Fields {
			spec.Fields = append(spec.Fields, engine.FieldRule{Path: f.Path, Entity: f.Entity, Operator: f.Operator})
		}
		for _, pt := range p.Patterns {
			spec.Patterns = append(spec.Patterns, engine.Pattern{Name: pt.Name, Regex: pt.Regex, Operator: pt.Operator})
		}
		o.Profiles[name] = spec
	}
	w, err := mask.NewWASM(context.Background(), o)
	if err != nil {
		return nil, fmt.Errorf("masking: %w", err)
	}
	return w, nil
}

// closer adapts a Close(ctx) error to io.Closer.
type closer func(context.Context) error

func (c closer) Close() error { return c(context.Background()) }
