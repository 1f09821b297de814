// Package examples holds the configuration `custos dev` runs with when it is
// given none, and (in examples/demo) the demo upstream it starts.
package examples

import _ "embed"

// DevConfig is examples/dev.yaml.
//
//go:embed dev.yaml
var DevConfig []byte
