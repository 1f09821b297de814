package inspect

import (
	"context"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/request"
)

// ByKind is the inspect stage: it hands each request to the inspector for
// its connection's kind (config.Kinds) and to HTTP for kind http and any
// kind without one.
type ByKind struct {
	byKind   map[string]Inspector
	fallback Inspector
}

// Option configures a ByKind.
type Option func(*ByKind)

// WithInspector makes in the inspector for connection kind kind (one of
// config.Kinds), replacing the default.
func WithInspector(kind string, in Inspector) Option {
	return func(b *ByKind) { b.byKind[kind] = in }
}

// WithSQLiteSchema compiles SQLite statements against schema (DDL), so
// tables and columns resolve as on the target.
func WithSQLiteSchema(schema string) Option {
	return func(b *ByKind) { b.byKind[config.KindSQLHTTP] = SQL{SQLiteSchema: schema} }
}

// WithDestructiveMutations sets the GraphQL mutation name prefixes taken as
// destructive (DefaultDestructivePrefixes otherwise).
func WithDestructiveMutations(prefixes ...string) Option {
	return func(b *ByKind) { b.byKind[config.KindGraphQL] = GraphQL{DestructivePrefixes: prefixes} }
}

// NewByKind returns the stage with the parser for every connection kind.
func NewByKind(opts ...Option) *ByKind {
	b := &ByKind{
		byKind: map[string]Inspector{
			config.KindSQLHTTP:    SQL{},
			config.KindKubernetes: Kubernetes{},
			config.KindAzure:      Azure{},
			config.KindCosmos:     Cosmos{},
			config.KindGraphQL:    GraphQL{},
		},
		fallback: HTTP{},
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Inspect returns the action of r by its connection's kind.
func (b *ByKind) Inspect(ctx context.Context, r *request.Request) (Action, error) {
	if in, ok := b.byKind[r.Connection.Kind]; ok && in != nil {
		return in.Inspect(ctx, r)
	}
	return b.fallback.Inspect(ctx, r)
}

// NeedsBody reports whether the inspector for kind reads request bodies, so
// the data plane must send them (with_request_body).
func NeedsBody(kind string) bool {
	switch kind {
	case config.KindSQLHTTP, config.KindKubernetes, config.KindCosmos, config.KindGraphQL:
		return true
	}
	return false
}
