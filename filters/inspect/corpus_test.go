package inspect

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/custos-dev/custos/filters/request"
)

// corpusCase is one line of testdata/corpus.txt.
type corpusCase struct {
	line          int
	trick, conn   string
	min           Risk
	exact         bool
	method, path  string
	headers, body string
}

func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	f, err := os.Open("testdata/corpus.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusCase
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		p := strings.SplitN(l, " | ", 6)
		if len(p) != 6 {
			t.Fatalf("corpus line %d: %d fields", n, len(p))
		}
		c := corpusCase{line: n, trick: p[0], conn: p[1], headers: p[4], body: unescapeCorpus(p[5])}
		min, exact := strings.CutPrefix(p[2], "=")
		c.min, c.exact = Risk(min), exact
		if !Valid(c.min) {
			t.Fatalf("corpus line %d: risk %q", n, p[2])
		}
		c.method, c.path, _ = strings.Cut(p[3], " ")
		out = append(out, c)
	}
	return out
}

// unescapeCorpus reads \n and \\; any other backslash stays.
func unescapeCorpus(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// request builds the case's request on its connection.
func (c corpusCase) request() (*request.Request, string) {
	kind, up, dialect, from := c.conn, "", "", ""
	switch {
	case strings.HasPrefix(c.conn, "sql/"):
		p := strings.SplitN(c.conn, "/", 3)
		kind, up, dialect, from = "sql-http", "http://db.internal", p[1], p[2]
	case c.conn == "kubernetes":
		up = kubeUp
	case c.conn == "azure-arm":
		kind, up = "azure", armUp
	case c.conn == "azure-blob":
		kind, up = "azure", blobUp
	case c.conn == "azure-table":
		kind, up = "azure", tableUp
	case c.conn == "azure-queue":
		kind, up = "azure", queueUp
	case c.conn == "cosmos":
		up = cosmosUp
	case c.conn == "graphql":
		up = gqlUp
	}
	var h []string
	if c.headers != "-" {
		for _, kv := range strings.Split(c.headers, ";") {
			k, v, _ := strings.Cut(kv, "=")
			h = append(h, k, v)
		}
	}
	r := req(kind, up, c.method, c.path, c.body, h...)
	r.Connection.Dialect, r.Connection.StatementFrom = dialect, from
	want := map[string]string{"sql-http": KindSQL, "kubernetes": KindKubernetes, "azure": KindAzure, "cosmos": KindCosmos, "graphql": KindGraphQL}[kind]
	return r, want
}

// TestAdversarialCorpus holds every inspector to the committed corpus: no
// case comes out less risky than its line says.
func TestAdversarialCorpus(t *testing.T) {
	cases := loadCorpus(t)
	if len(cases) < 200 {
		t.Errorf("the corpus has %d cases, want at least 200", len(cases))
	}
	tricks := map[string]int{}
	b := NewByKind()
	for _, c := range cases {
		tricks[c.trick]++
		r, kind := c.request()
		a := inspectOK(t, b, r)
		ok := AtLeast(a.Risk, c.min)
		if c.exact {
			ok = a.Risk == c.min
		}
		if a.Kind != kind || !ok {
			t.Errorf("corpus line %d (%s): %s %s, want %s at least %s: %q", c.line, c.trick, a.Kind, a.Risk, kind, c.min, a.Summary)
		}
	}
	for trick, n := range tricks {
		if n < 10 {
			t.Errorf("trick %s has %d cases, want at least 10", trick, n)
		}
	}
}

// demoSchema is the demo warehouse's shape, with rows, for the differential
// check.
const demoSchema = `CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT, email TEXT, card TEXT, a INT);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INT, total REAL);
INSERT INTO customers VALUES (1,'Ada','ada@example.com','4111111111111111',0),(2,'Bob','bob@example.com','5500000000000004',0);
INSERT INTO orders VALUES (1,1,9.5),(2,2,3.0);`

// snapshot is everything a statement could change in the demo database.
func snapshot(t *testing.T, c *sql.Conn) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{"SELECT type, name, sql FROM sqlite_master ORDER BY name", "SELECT * FROM customers ORDER BY id", "SELECT * FROM orders ORDER BY id"} {
		rows, err := c.QueryContext(context.Background(), q)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", q, err)
			continue
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			v := make([]any, len(cols))
			p := make([]any, len(cols))
			for i := range v {
				p[i] = &v[i]
			}
			if err := rows.Scan(p...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&b, v...)
		}
		rows.Close()
	}
	return b.String()
}

// TestSQLiteDifferential runs every SQLite statement of the corpus (and
// more) that the inspector does not call admin against a real SQLite
// database with the demo schema: a statement the inspector calls read must
// change nothing, and a statement that changed something must not be read.
func TestSQLiteDifferential(t *testing.T) {
	stmts := []string{
		"SELECT * FROM customers", "SELECT count(*) FROM orders WHERE total > 1", "DELETE FROM customers WHERE id = 1",
		"UPDATE customers SET a = 1", "INSERT INTO orders(customer_id, total) VALUES (1, 2)", "REPLACE INTO customers(id, name) VALUES (1, 'x')",
		"INSERT OR IGNORE INTO customers(id) VALUES (1)", "SELECT 1; DELETE FROM orders", "WITH x AS (SELECT 1) DELETE FROM orders",
		"CREATE TEMP TABLE t AS SELECT * FROM customers", "SELECT * FROM customers WHERE name = 'x'; --DELETE FROM customers",
		"UPDATE customers SET name = upper(name) WHERE id IN (SELECT customer_id FROM orders)", "BEGIN; DELETE FROM orders; COMMIT",
		"SELECT 1 /* /* */ ; UPDATE orders SET total = 0; /* */", "DELETE FROM orders RETURNING *", "INSERT INTO orders SELECT * FROM orders WHERE 0",
		"DROP TABLE orders", "SAVEPOINT a; DELETE FROM orders; RELEASE a", "ANALYZE", "SELECT * FROM pragma_table_info('customers')",
	}
	for _, c := range loadCorpus(t) {
		if strings.HasPrefix(c.conn, "sql/sqlite/body") {
			stmts = append(stmts, c.body)
		}
	}
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	checked, wrote := 0, 0
	for _, s := range stmts {
		r := req("sql-http", "http://db", "POST", "/q", s)
		r.Connection.Dialect, r.Connection.StatementFrom = "sqlite", "body"
		a := inspectOK(t, SQL{SQLiteSchema: demoSchema}, r)
		if a.Risk == RiskAdmin {
			continue // never run what reaches files, extensions or the schema table
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{"DROP TABLE IF EXISTS customers", "DROP TABLE IF EXISTS orders", "DROP TABLE IF EXISTS temp.t", demoSchema} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		before := snapshot(t, conn)
		_, execErr := conn.ExecContext(ctx, s)
		var tempTables int
		_ = conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_temp_master").Scan(&tempTables)
		changed := snapshot(t, conn) != before || tempTables > 0
		conn.Close()
		checked++
		if a.Risk == RiskRead && changed {
			t.Errorf("%q: the inspector says read, SQLite changed the database", s)
		}
		if changed {
			wrote++
		}
		if execErr != nil {
			t.Logf("%q (%s): SQLite refused it: %v", s, a.Risk, execErr)
		}
	}
	if checked < 20 || wrote < 10 {
		t.Errorf("only %d statements checked, %d of them writing", checked, wrote)
	}
	t.Logf("%d statements run against SQLite, %d of them changed the database", checked, wrote)
}
