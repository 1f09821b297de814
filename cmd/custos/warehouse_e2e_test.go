package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/examples/warehouse"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// The warehouse demo (SQL over HTTP to a real SQLite database) behind the
// default bundle, through both data planes: a SELECT reaches the database;
// DELETE FROM customers, the same DELETE behind a comment SQLite does not
// nest, and a DROP stacked after a SELECT never do without an approval (403
// approval_required at once, async mode), and the database still holds
// every customer; a reader is refused the sensitive accounts table; the
// decision event names the sql action, its risk and the statements. Once
// approved, the grant lets that DELETE through once, and no other
// statement.
func TestWarehouseThroughBothDataPlanes(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		w := warehouse.Handler()
		t.Cleanup(func() { w.Close() }) // after the stack's own cleanups
		s := stacktest.Start(t, dp, stacktest.Options{
			Handler: w,
			Config: func(u string) (*config.Config, error) {
				return config.Parse([]byte(stack.LoopbackListen + `policy:
  bundle: builtin:default
connections:
  - name: warehouse
    upstream: ` + u + `
    kind: sql-http
    dialect: sqlite
    statement_from: json:/query
approvals:
  mode: async
dev:
  issuer: true
`))
			},
		})
		token := func(groups ...string) string {
			tok, _, err := s.CP.DevIssuer.Mint(devissuer.Claims{Subject: "nightly-etl", Groups: groups})
			if err != nil {
				t.Fatal(err)
			}
			return "Bearer " + tok
		}
		writer, reader := token("warehouse-writers"), token("warehouse-readers")
		approver := "Bearer " + func() string {
			tok, _, err := s.CP.DevIssuer.Mint(devissuer.Claims{Subject: "dana", Human: true, Groups: []string{"custos-approvers"}})
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}()
		// sql sends statement as auth, with headers given as name, value.
		sql := func(auth, statement string, headers ...string) (*http.Response, []byte) {
			t.Helper()
			b, _ := json.Marshal(map[string]string{"query": statement})
			req, err := http.NewRequest(http.MethodPost, s.URL+"/warehouse/query", strings.NewReader(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("authorization", auth)
			req.Header.Set("content-type", "application/json")
			for i := 0; i+1 < len(headers); i += 2 {
				req.Header.Set(headers[i], headers[i+1])
			}
			return do(t, req)
		}
		rows := func(resp *http.Response, body []byte) []map[string]any {
			t.Helper()
			var res warehouse.Result
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if err := json.Unmarshal(body, &res); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			return res.Rows
		}
		decision := func(resp *http.Response) record.Event {
			t.Helper()
			d := s.Events.Of(record.Decided, resp.Header.Get("x-custos-request-id"))
			if len(d) != 1 {
				t.Fatalf("%d decision events for %s", len(d), resp.Header.Get("x-custos-request-id"))
			}
			return d[0]
		}

		// A SELECT goes through, body and all, and comes back with rows.
		resp, body := sql(writer, "SELECT id, name FROM customers WHERE id <= 3 ORDER BY id")
		if r := rows(resp, body); len(r) != 3 || r[0]["name"] == "" {
			t.Fatalf("the SELECT: %s", body)
		}
		if d := decision(resp); !d.Allow || d.Action != "sql" || d.Risk != "read" ||
			!strings.Contains(d.Summary, "SELECT id, name FROM customers WHERE id <= 3") {
			t.Fatalf("the SELECT's decision %+v", d)
		}

		// What would delete rows never reaches the database without an
		// approval, however it is written.
		before := s.Upstream.Count()
		var deleteApproval string
		for _, c := range []struct{ name, statement, summary string }{
			{"delete", "DELETE FROM customers", "DELETE FROM customers [DELETE without WHERE]"},
			{"comment trick", "/* /* */ DELETE FROM customers", "DELETE FROM customers [DELETE without WHERE]"},
			{"stacked", "SELECT 1; DROP TABLE customers", "2 statements, SELECT 1; DROP TABLE customers"},
		} {
			resp, body := sql(writer, c.statement)
			m := contractError(t, resp, body, http.StatusForbidden, "approval_required")
			if id, _ := m["approval_id"].(string); id == "" || m["status"] != "pending" {
				t.Fatalf("%s: %s", c.name, body)
			}
			if c.name == "delete" {
				deleteApproval = m["approval_id"].(string)
			}
			if d := decision(resp); d.Action != "sql" || d.Risk != "destructive" || !strings.Contains(d.Summary, c.summary) {
				t.Fatalf("%s: decision %+v", c.name, d)
			}
		}
		if got := s.Upstream.Count(); got != before {
			t.Fatalf("the upstream received %d requests that needed an approval", got-before)
		}

		// A reader may read customers but not the sensitive accounts
		// table, and is told whom to ask; a writer may read it.
		if r := rows(sql(reader, "SELECT count(*) AS n FROM customers")); r[0]["n"] != 50.0 {
			t.Fatalf("after the refused statements the warehouse holds %v customers", r[0]["n"])
		}
		resp, body = sql(reader, "SELECT iban, balance FROM Accounts")
		m := contractError(t, resp, body, http.StatusForbidden, "forbidden")
		if r, _ := m["reasons"].([]any); len(r) != 1 || !strings.Contains(r[0].(string), "touching sensitive table accounts") ||
			!strings.Contains(r[0].(string), "ask for one of: warehouse-admins, warehouse-writers") {
			t.Fatalf("a reader reads accounts: %s", body)
		}
		if r := rows(sql(writer, "SELECT iban, balance FROM accounts WHERE customer_id = 1")); len(r) != 1 {
			t.Fatalf("a writer reads accounts: %v", r)
		}

		// Approved, the grant is for that statement alone (the body is in
		// the fingerprint): it does not carry a DROP, and the DELETE it is
		// for then runs once.
		req, err := http.NewRequest(http.MethodPost, "http://"+s.CP.HTTPAddr+"/v1/approvals/"+deleteApproval+"/approve", strings.NewReader(`{"comment": "test data"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("authorization", approver)
		req.Header.Set("content-type", "application/json")
		if resp, body := do(t, req); resp.StatusCode != http.StatusOK {
			t.Fatalf("approve: %d %s", resp.StatusCode, body)
		}
		before = s.Upstream.Count()
		resp, body = sql(writer, "DROP TABLE customers", "x-custos-approval-id", deleteApproval)
		contractError(t, resp, body, http.StatusForbidden, "approval_required")
		if s.Upstream.Count() != before {
			t.Fatal("a grant for a DELETE let a DROP through")
		}
		resp, body = sql(writer, "DELETE FROM customers", "x-custos-approval-id", deleteApproval)
		var res warehouse.Result
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &res) != nil || res.Changes != 50 {
			t.Fatalf("the approved DELETE: %d %s", resp.StatusCode, body)
		}
		resp, body = sql(writer, "DELETE FROM customers", "x-custos-approval-id", deleteApproval)
		contractError(t, resp, body, http.StatusForbidden, "approval_required")
	})
}
