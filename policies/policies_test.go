package policies_test

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/tester"
)

// Every Rego test of the default bundle passes (what `custos policy test`
// runs), and there is at least one test per rule file.
func TestRegoTests(t *testing.T) {
	results, err := tester.Run(context.Background(), ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(results) < 15 {
		t.Fatalf("%d Rego tests, want every rule tested", len(results))
	}
	for _, r := range results {
		if r.Fail || r.Error != nil {
			t.Errorf("%s.%s: fail=%v error=%v", r.Package, r.Name, r.Fail, r.Error)
		}
	}
}
