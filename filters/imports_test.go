// Package filters_test holds the rule every stage package keeps: a stage
// knows nothing of gRPC, Envoy's protocols or the services that compose it,
// so it can be tested, replaced and reused on its own (docs/architecture.md).
package filters_test

import (
	"os/exec"
	"strings"
	"testing"
)

// forbidden are import path prefixes no stage may depend on, directly or not.
var forbidden = []string{
	"google.golang.org/grpc",
	"github.com/envoyproxy/",
	"github.com/custos-dev/custos/extproc",
	"github.com/custos-dev/custos/xds",
	"github.com/custos-dev/custos/envoy",
	"github.com/custos-dev/custos/controlplane",
	"github.com/custos-dev/custos/stack",
}

func TestStagesImportNeitherGRPCNorEnvoyNorExtproc(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", "github.com/custos-dev/custos/filters/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 6 {
		t.Fatalf("found only %v: the stage packages moved?", pkgs)
	}
	for _, pkg := range pkgs {
		deps, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, d := range strings.Fields(string(deps)) {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s depends on %s: a stage must not know %s", pkg, d, f)
				}
			}
		}
	}
}
