package inspect

import (
	"context"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// checkFuzz holds every inspector to the same rules on any input: no
// error, no panic, a risk that is one of the constants, one summary line.
func checkFuzz(t *testing.T, in Inspector, kind string, method, target, body string, headers ...string) Action {
	t.Helper()
	a, err := in.Inspect(context.Background(), req(kind, "https://acct.blob.core.windows.net", method, target, body, headers...))
	if err != nil {
		t.Fatalf("error: %v", err)
	}
	if !Valid(a.Risk) {
		t.Fatalf("risk %q", a.Risk)
	}
	for _, c := range a.Summary {
		if c == '\n' || c == '\r' {
			t.Fatalf("summary has a line break: %q", a.Summary)
		}
	}
	return a
}

func FuzzSQL(f *testing.F) {
	for _, s := range []string{"SELECT 1", "DELETE FROM t", "SELECT 1 /* /* */ ; DELETE FROM t; /* */ */",
		"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DO $$ BEGIN END $$", "SELECT 'a'';--", "\x00", "/*",
		"COPY t TO PROGRAM 'x'", "PRAGMA writable_schema=1", "ATTACH 'x' AS y", "SELECT \"a\" FROM b JOIN c ON d.e = f.g"} {
		f.Add(false, s)
		f.Add(true, s)
	}
	f.Fuzz(func(t *testing.T, sqlite bool, s string) {
		if len(s) > 1<<14 {
			return
		}
		r := req("sql-http", "http://db", "POST", "/q", s)
		r.Connection.StatementFrom = "body"
		r.Connection.Dialect = "postgres"
		if sqlite {
			r.Connection.Dialect = "sqlite"
		}
		a, err := SQL{}.Inspect(context.Background(), r)
		if err != nil || !Valid(a.Risk) {
			t.Fatalf("%v %q", err, a.Risk)
		}
		if !sqlite {
			if _, perr := pg.Parse(s); perr != nil && a.Risk != RiskUnknown {
				t.Fatalf("PostgreSQL rejects %q but the action is %s", s, a.Risk)
			}
		}
	})
}

func FuzzKubernetesPath(f *testing.F) {
	for _, p := range []string{"/api/v1/namespaces/a/pods/b/exec?command=sh", "/apis/apps/v1/deployments", "//api/./v1/../v1/secrets",
		"/api/v1/namespaces/a/%73ecrets", "/api/v1/watch/pods", "/api/v1/namespaces/a/pods/b/proxy/x/y"} {
		f.Add("GET", p, "")
		f.Add("POST", p, `{"spec":{"hostPID":true}}`)
	}
	f.Fuzz(func(t *testing.T, method, target, body string) {
		checkFuzz(t, Kubernetes{}, "kubernetes", method, target, body, "content-type", "application/json")
	})
}

func FuzzAzure(f *testing.F) {
	for _, p := range []string{"/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a/listKeys",
		"/c/b?comp=tags&sig=x", "/Tables('x')", "/q/messages?peekonly=true", "/providers/Microsoft.ResourceGraph/resources"} {
		f.Add("POST", p)
		f.Add("DELETE", p)
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		for _, up := range []string{armUp, blobUp, tableUp, queueUp} {
			a, err := Azure{}.Inspect(context.Background(), req("azure", up, method, target, ""))
			if err != nil || !Valid(a.Risk) {
				t.Fatalf("%v %q", err, a.Risk)
			}
		}
	})
}

func FuzzCosmos(f *testing.F) {
	f.Add("POST", "/dbs/a/colls/b/docs", `{"query":"SELECT * FROM c"}`)
	f.Add("POST", "/dbs/a/colls/b/docs", `[{"operationType":"Delete"}]`)
	f.Fuzz(func(t *testing.T, method, target, body string) {
		checkFuzz(t, Cosmos{}, "cosmos", method, target, body, "x-ms-documentdb-isquery", "true")
		checkFuzz(t, Cosmos{}, "cosmos", method, target, body, "x-ms-cosmos-is-batch-request", "true")
	})
}

func FuzzGraphQL(f *testing.F) {
	for _, q := range []string{"{ a }", "mutation { deleteA }", "mutation { ...F } fragment F on M { x }",
		"subscription { s }", "query { a(x: \"\"\"b\"\"\") }", "{"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		a := checkFuzz(t, GraphQL{}, "graphql", "POST", "/graphql", q, "content-type", "application/graphql")
		if _, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: q}, maxGraphQLTokens); err != nil && a.Risk != RiskUnknown {
			t.Fatalf("the parser rejects %q but the action is %s", q, a.Risk)
		}
	})
}
