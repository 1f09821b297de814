package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// execUpstream plays a Kubernetes API server's exec: it upgrades to
// WebSocket (101) and echoes what the client sends, as a shell would.
func execUpstream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "an upgrade is required", http.StatusBadRequest)
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		rw.Flush()
		_, _ = io.Copy(conn, rw)
	})
}

// A kubectl-style exec through an upgrade, through both data planes: the
// upgrade request is decided like any other (policy asks for an approval
// for exec), refused until approved, and once approved the tunnel carries
// the session both ways.
func TestExecUpgradeOnlyAfterApprovalThroughBothDataPlanes(t *testing.T) {
	bundle := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bundle, "custos"), 0o755); err != nil {
		t.Fatal(err)
	}
	rego := `package custos.authz

decision := {"allow": true, "reasons": ["exec runs commands in a production pod"], "approval": {"rule": "exec", "approvers": ["sre"]}} if {
	input.action.kubernetes.subresource == "exec"
} else := {"allow": true, "reasons": ["reads are fine"]}
`
	if err := os.WriteFile(filepath.Join(bundle, "custos", "authz.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		s := stacktest.Start(t, dp, stacktest.Options{Handler: execUpstream(), Config: func(u string) (*config.Config, error) {
			return config.Parse([]byte(stack.LoopbackListen + `policy:
  bundle: ` + bundle + `
connections:
  - name: aks
    upstream: ` + u + `
    kind: kubernetes
approvals:
  mode: async
dev:
  issuer: true
`))
		}})
		mint := func(c devissuer.Claims) string {
			tok, _, err := s.CP.DevIssuer.Mint(c)
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer " + tok
		}
		agent := mint(devissuer.Claims{Subject: "ops-agent"})
		approver := mint(devissuer.Claims{Subject: "sam", Human: true, Groups: []string{"sre"}})

		exec := func(approvalID string) (*http.Response, *bufio.Reader, net.Conn) {
			t.Helper()
			c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			req := "GET /aks/api/v1/namespaces/payments/pods/ledger-0/exec?command=sh&stdin=true&stdout=true HTTP/1.1\r\n" +
				"Host: aks.internal\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: " + agent + "\r\n"
			if approvalID != "" {
				req += "X-Custos-Approval-Id: " + approvalID + "\r\n"
			}
			if _, err := io.WriteString(c, req+"\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			return resp, br, c
		}

		resp, br, c := exec("")
		body, _ := io.ReadAll(io.LimitReader(br, 4096))
		c.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(body), `"approval_required"`) {
			t.Fatalf("an exec without approval: %d %s", resp.StatusCode, body)
		}
		id := between(string(body), `"approval_id":"`, `"`)
		if id == "" {
			t.Fatalf("no approval id in %s", body)
		}
		req, _ := http.NewRequest("POST", "http://"+s.CP.HTTPAddr+"/v1/approvals/"+id+"/approve", strings.NewReader(`{"comment": "on call, ticket 4711"}`))
		req.Header.Set("authorization", approver)
		if r, b := do(t, req); r.StatusCode != 200 {
			t.Fatalf("approve: %d %s", r.StatusCode, b)
		}

		resp, br, c = exec(id)
		defer c.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(io.LimitReader(br, 4096))
			t.Fatalf("the approved exec: %d %s", resp.StatusCode, b)
		}
		for _, line := range []string{"ls /\n", "id\n"} {
			if _, err := io.WriteString(c, line); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(line))
			if _, err := io.ReadFull(br, got); err != nil || string(got) != line {
				t.Fatalf("through the tunnel: %q %v", got, err)
			}
		}
	})
}

func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}
