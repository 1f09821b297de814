package names_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The names package is a leaf: everyone imports it, so it imports nothing
// of the project.
func TestNamesImportsNothingOfTheProject(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/custos-dev/custos/names").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, "github.com/custos-dev/custos/") && d != "github.com/custos-dev/custos/names" {
			t.Errorf("names imports %s", d)
		}
	}
}

// extproc serves Check and Process; it must not link the ADS server.
func TestExtprocDoesNotLinkTheADSServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/custos-dev/custos/extproc").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if d == "github.com/custos-dev/custos/xds" || strings.HasPrefix(d, "github.com/envoyproxy/go-control-plane/pkg/server") {
			t.Errorf("extproc links %s", d)
		}
	}
}
