package warehouse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/examples/warehouse"
	"github.com/custos-dev/custos/filters/inspect"
	"github.com/custos-dev/custos/filters/request"
)

// server serves a fresh warehouse on loopback for one test.
func server(t *testing.T) *httptest.Server {
	t.Helper()
	w := warehouse.Handler()
	srv := httptest.NewServer(w)
	t.Cleanup(func() {
		srv.Close()
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

// reply is any answer of the API.
type reply struct {
	warehouse.Result
	Error   string `json:"error"`
	Message string `json:"message"`
}

func post(t *testing.T, srv *httptest.Server, body string) (int, reply) {
	t.Helper()
	resp, err := http.Post(srv.URL+"/query", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("content-type"); ct != "application/json" {
		t.Fatalf("content-type %q: %s", ct, raw)
	}
	var r reply
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	return resp.StatusCode, r
}

func query(t *testing.T, srv *httptest.Server, q string) reply {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"query": q})
	status, r := post(t, srv, string(b))
	if status != http.StatusOK {
		t.Fatalf("%s: %d %+v", q, status, r)
	}
	return r
}

func count(t *testing.T, srv *httptest.Server, table string) float64 {
	t.Helper()
	r := query(t, srv, "SELECT count(*) AS n FROM "+table)
	return r.Rows[0]["n"].(float64)
}

// The warehouse holds the demo's customers, field for field, and one
// account per customer.
func TestSeededWithTheDemoCustomers(t *testing.T) {
	srv := server(t)
	want := demo.Customers(50, 1)
	r := query(t, srv, "SELECT * FROM customers ORDER BY id")
	if len(r.Rows) != len(want) {
		t.Fatalf("%d customers, want %d", len(r.Rows), len(want))
	}
	wantCols := []string{"id", "name", "email", "phone", "ssn", "card_number", "iban", "account_number", "routing_number", "balance", "segment"}
	if !slices.Equal(r.Columns, wantCols) {
		t.Fatalf("columns %v, want %v", r.Columns, wantCols)
	}
	for i, c := range want {
		// The rows are the demo API's JSON records.
		b, _ := json.Marshal(r.Rows[i])
		var got demo.Customer
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got != c {
			t.Fatalf("row %d: %+v, want %+v", i, got, c)
		}
	}
	if n := count(t, srv, "accounts"); n != 50 {
		t.Fatalf("%v accounts", n)
	}
	r = query(t, srv, "SELECT a.iban FROM accounts a JOIN customers c ON c.id = a.customer_id WHERE c.id = 7")
	if len(r.Rows) != 1 || r.Rows[0]["iban"] != want[6].IBAN {
		t.Fatalf("join: %+v", r.Rows)
	}
}

// It is the target, not the guard: writes, DDL and stacked statements all
// run, and say how many rows they changed.
func TestEveryStatementRuns(t *testing.T) {
	srv := server(t)
	if r := query(t, srv, "DELETE FROM customers WHERE id > 45"); r.Changes != 5 || len(r.Rows) != 0 {
		t.Fatalf("delete: %+v", r)
	}
	if n := count(t, srv, "customers"); n != 45 {
		t.Fatalf("%v customers after the delete", n)
	}
	if r := query(t, srv, "UPDATE accounts SET balance = '0.00'"); r.Changes != 50 {
		t.Fatalf("update: %+v", r)
	}
	if r := query(t, srv, "SELECT 1; DROP TABLE accounts"); r.Changes != 0 {
		t.Fatalf("stacked: %+v", r)
	}
	status, r := post(t, srv, `{"query": "SELECT count(*) FROM accounts"}`)
	if status != http.StatusUnprocessableEntity || r.Error != "sql_error" || !strings.Contains(r.Message, "no such table: accounts") {
		t.Fatalf("the stacked DROP ran, so: %d %+v", status, r)
	}
	// SQLite's comments do not nest: this is a DELETE.
	query(t, srv, "/* /* */ DELETE FROM customers")
	if n := count(t, srv, "customers"); n != 0 {
		t.Fatalf("%v customers after the comment trick", n)
	}
}

// Each Handler has its own database.
func TestHandlersDoNotShare(t *testing.T) {
	a, b := server(t), server(t)
	query(t, a, "DELETE FROM customers")
	if n := count(t, b, "customers"); n != 50 {
		t.Fatalf("the other warehouse has %v customers", n)
	}
}

func TestResultValues(t *testing.T) {
	srv := server(t)
	r := query(t, srv, "SELECT 1 AS i, 1.5 AS f, 'x' AS s, NULL AS z, x'00ff' AS b, 1e999 AS inf, c.id, a.customer_id AS id FROM customers c JOIN accounts a ON a.customer_id = c.id WHERE c.id = 3")
	row := r.Rows[0]
	if row["i"] != 1.0 || row["f"] != 1.5 || row["s"] != "x" || row["z"] != nil || row["b"] != "AP8=" || row["inf"] != "+Inf" {
		t.Fatalf("values %+v", row)
	}
	if row["id"] != 3.0 || row["id_7"] != 3.0 {
		t.Fatalf("a repeated column name: %+v", row)
	}
	r = query(t, srv, "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 1500) SELECT x FROM n")
	if len(r.Rows) != warehouse.MaxRows || !r.Truncated {
		t.Fatalf("%d rows, truncated %v", len(r.Rows), r.Truncated)
	}
}

func TestErrors(t *testing.T) {
	srv := server(t)
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"not JSON", "POST", "/query", "DELETE FROM customers", 400, "bad_request"},
		{"no query", "POST", "/query", `{"statement": "SELECT 1"}`, 400, "bad_request"},
		{"not SQL", "POST", "/query", `{"query": "SELEKT 1"}`, 422, "sql_error"},
		{"no table", "POST", "/query", `{"query": "SELECT * FROM payroll"}`, 422, "sql_error"},
		{"too large", "POST", "/query", `{"query": "` + strings.Repeat(" ", warehouse.MaxBodyBytes) + `"}`, 413, "request_too_large"},
		{"GET", "GET", "/query", "", 405, "method_not_allowed"},
		{"other path", "POST", "/sql", `{"query": "SELECT 1"}`, 404, "not_found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r reply
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status || r.Error != c.code || r.Message == "" {
				t.Fatalf("%d %+v, want %d %s", resp.StatusCode, r, c.status, c.code)
			}
		})
	}
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, b)
	}
}

// A statement that outlives its context is interrupted, and the
// warehouse answers the next one.
func TestQueryIsInterrupted(t *testing.T) {
	w := warehouse.Handler()
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := w.Query(ctx, "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n")
	if err == nil {
		t.Fatal("an endless statement returned")
	}
	r, err := w.Query(context.Background(), "SELECT count(*) AS n FROM customers")
	if err != nil || r.Rows[0]["n"] != int64(50) {
		t.Fatalf("after the interrupt: %+v %v", r, err)
	}
}

// Schema is what the target runs, so the guard given it
// (inspect.WithSQLiteSchema) resolves the warehouse's tables and columns:
// a read of accounts is a read naming accounts, a statement on a table the
// warehouse does not have is refused by SQLite's compiler, and the comment
// trick is a DELETE as the target reads it.
func TestSchemaForTheInspector(t *testing.T) {
	in := inspect.NewByKind(inspect.WithSQLiteSchema(warehouse.Schema))
	act := func(q string) inspect.Action {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"query": q})
		r := &request.Request{
			Connection: config.Connection{Name: "warehouse", Kind: config.KindSQLHTTP, Upstream: "http://127.0.0.1:8082",
				Dialect: config.DialectSQLite, StatementFrom: "json:/query"},
			Method: "POST", Path: "/query", Headers: map[string]string{"content-type": "application/json"},
			Body: b, BodyBytes: int64(len(b)),
		}
		a, err := in.Inspect(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := act("SELECT c.name, a.balance FROM customers c JOIN accounts a ON a.customer_id = c.id")
	stmts := a.Details["statements"].([]any)
	tables := stmts[0].(map[string]any)["tables"].([]string)
	if a.Kind != inspect.KindSQL || a.Risk != inspect.RiskRead || !slices.Contains(tables, "accounts") || !slices.Contains(tables, "customers") {
		t.Fatalf("join: %+v", a)
	}
	for q, want := range map[string]inspect.Risk{
		"DELETE FROM customers":                                      inspect.RiskDestructive,
		"/* /* */ DELETE FROM customers":                             inspect.RiskDestructive,
		"SELECT 1; DROP TABLE customers":                             inspect.RiskDestructive,
		"UPDATE accounts SET balance = 0 WHERE account_number = '1'": inspect.RiskWrite,
	} {
		if a := act(q); !inspect.AtLeast(a.Risk, want) {
			t.Errorf("%s: %s, want at least %s", q, a.Risk, want)
		}
	}
}

// Every table of Schema is in Tables.
func TestTables(t *testing.T) {
	w := warehouse.Handler()
	defer w.Close()
	r, err := w.Query(context.Background(), "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY rowid")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, row := range r.Rows {
		got = append(got, row["name"].(string))
	}
	if !slices.Equal(got, warehouse.Tables) {
		t.Fatalf("tables %v, Tables %v", got, warehouse.Tables)
	}
}

// Requests in parallel share the one database safely (run with -race).
func TestConcurrentRequests(t *testing.T) {
	srv := server(t)
	done := make(chan error)
	for i := range 8 {
		go func() {
			q := "SELECT count(*) AS n FROM customers"
			if i%2 == 1 {
				q = "UPDATE accounts SET balance = balance WHERE customer_id = 1"
			}
			b, _ := json.Marshal(map[string]string{"query": q})
			resp, err := http.Post(srv.URL+"/query", "application/json", strings.NewReader(string(b)))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s: status %d", q, resp.StatusCode)
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
