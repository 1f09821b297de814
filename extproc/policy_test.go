package extproc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/custos-dev/custos/filters/record"
)

// testPolicy decides by the action's risk, and returns garbage when the
// request asks for it.
const testPolicy = `package custos.authz

decision := {"allow": "yes"} if {
	input.request.headers["x-test"] == "garbage"
} else := {"allow": true, "reasons": ["reads are fine"]} if {
	input.action.risk == "read"
} else := {"allow": false, "reasons": ["writes are not allowed here"]} if {
	input.action.risk == "write"
} else := {"allow": true, "reasons": ["destroying needs a DBA"], "approval": {"rule": "dba", "approvers": ["dbas"]}} if {
	input.action.risk == "destructive"
}
`

func policyYAML(t *testing.T, mode string) string {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "custos"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "custos", "authz.rego"), []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".manifest"), []byte(`{"revision": "test-7"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return "policy:\n  bundle: " + dir + "\n  poll_interval: 1h\n" + cfgYAML + "    policy_mode: " + mode + "\n"
}

func methodReq(method, path string, headers map[string]string) *authv3.CheckRequest {
	r := checkReq(routeExt(), "h", path, headers)
	r.Attributes.Request.Http.Method = method
	r.Attributes.Request.Http.Headers[":method"] = method
	return r
}

func TestPolicyDecisionsAreEnforced(t *testing.T) {
	c := serveWith(t, policyYAML(t, "enforce"), nil)
	ctx := context.Background()
	check := func(method string, h map[string]string) *authv3.CheckResponse {
		t.Helper()
		resp, err := c.authz.Check(ctx, methodReq(method, "/customers/1", h))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := check("GET", nil)
	if code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("a read: %s", resp.GetDeniedResponse().GetBody())
	}
	v, err := verdictFrom(resp.GetDynamicMetadata())
	if err != nil || v.Revision != "test-7" || len(v.DecisionID) != 32 || v.Reasons[0] != "reads are fine" {
		t.Fatalf("verdict %+v %v", v, err)
	}

	body := deniedBody(t, check("POST", nil), 403)
	if body["error"] != CodeForbidden || body["reasons"].([]any)[0] != "writes are not allowed here" || len(body["decision_id"].(string)) != 32 {
		t.Fatalf("a write: %v", body)
	}
	body = deniedBody(t, check("DELETE", nil), 403)
	if body["error"] != CodeApprovalRequired || !strings.Contains(body["message"].(string), "rule dba") {
		t.Fatalf("a delete: %v", body)
	}
	body = deniedBody(t, check("GET", map[string]string{"x-test": "garbage"}), 503)
	if body["error"] != CodeUnavailable {
		t.Fatalf("garbage: %v", body)
	}

	pc := c.rec.of(record.PolicyChanged)
	if len(pc) != 1 || pc[0].Revision != "test-7" {
		t.Fatalf("policy_changed %+v", pc)
	}
	for _, e := range c.rec.of(record.Decided) {
		if e.Shadow != "" {
			t.Fatalf("an enforcing connection recorded a shadow decision: %+v", e)
		}
	}
}

// Shadow mode: the request goes through, and the record says what
// enforcing would have answered. Garbage is still 503: shadow mode never
// turns a policy that cannot decide into an allow.
func TestShadowModeRecordsTheWouldBeDecision(t *testing.T) {
	c := serveWith(t, policyYAML(t, "shadow"), nil)
	ctx := context.Background()
	for method, shadow := range map[string]string{"GET": "", "POST": "forbidden", "DELETE": "approval_required: rule dba"} {
		resp, err := c.authz.Check(ctx, methodReq(method, "/customers/1", nil))
		if err != nil {
			t.Fatal(err)
		}
		if code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
			t.Fatalf("%s in shadow mode: %s", method, resp.GetDeniedResponse().GetBody())
		}
		d := c.rec.of(record.Decided)
		if e := d[len(d)-1]; e.Method != method || e.Shadow != shadow || !e.Allow {
			t.Fatalf("%s: recorded %+v", method, e)
		}
	}
	resp, err := c.authz.Check(ctx, methodReq("GET", "/customers/1", map[string]string{"x-test": "garbage"}))
	if err != nil {
		t.Fatal(err)
	}
	deniedBody(t, resp, 503)
}
