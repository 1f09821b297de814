// Package policies holds the default policy bundle (Rego and data, OPA's
// bundle layout) and builds it into the binary, so that `custos dev` decides
// with it wherever it runs. Copy the directory to write your own.
package policies

import "embed"

// Bundle is the default bundle: .manifest, custos/authz (the rules and
// their tests) and custos/config (the data they read).
//
//go:embed .manifest custos
var Bundle embed.FS

// Builtin is the value of policy.bundle that names this bundle.
const Builtin = "builtin:default"
