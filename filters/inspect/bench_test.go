package inspect

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/filters/request"
)

// benchSchema is the shape of the warehouse demo (examples/warehouse), for
// SQLite inspections given the target's schema (WithSQLiteSchema).
const benchSchema = `CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT, ssn TEXT,
  card_number TEXT, iban TEXT, account_number TEXT, routing_number TEXT, balance TEXT, segment TEXT);
CREATE TABLE accounts (account_number TEXT PRIMARY KEY, customer_id INTEGER, routing_number TEXT, iban TEXT, balance TEXT);`

// BenchmarkInspect is the cost of inspecting one request of each kind, for
// a typical request and for a 64 KiB body, beside inspect.HTTP as the
// baseline. Run with -benchmem; besides ns/op, B/op and allocs/op it
// reports p50-ns and p99-ns, the median and 99th percentile of single
// inspections (each timed alone, so they include about 50 ns of clock
// reads that ns/op does not).
//
//	go test ./filters/inspect -run XXX -bench Inspect -benchmem
func BenchmarkInspect(b *testing.B) {
	big := strings.Repeat("x", 64<<10)
	bigSQL := "SELECT id, name FROM customers WHERE name IN ('" + strings.Repeat("a', '", 64<<10/5) + "a')"
	bigPod := `{"kind":"Pod","metadata":{"annotations":{"a":"` + big + `"}},"spec":{"containers":[{"name":"a","image":"busybox"}]}}`
	bigGQL := `{"query":"{ customers(filter: \"` + big + `\") { id name } }"}`
	bigCosmos := `{"query":"SELECT * FROM c WHERE c.note = '` + big + `'"}`
	bigARM := `{"properties":{"note":"` + big + `"}}`
	jq := func(s string) string { b, _ := jsonMarshal(map[string]string{"query": s}); return string(b) }
	sqlReqD := func(d, body string) *request.Request {
		r := req("sql-http", "http://db", "POST", "/query", body)
		r.Connection.Dialect, r.Connection.StatementFrom = d, "json:/query"
		return r
	}
	withSchema := SQL{SQLiteSchema: benchSchema}
	for _, c := range []struct {
		name string
		in   Inspector
		r    *request.Request
	}{
		{"http", HTTP{}, req("http", "http://x", "DELETE", "/api/customers/42", "")},
		{"http-64KiB", HTTP{}, req("http", "http://x", "POST", "/api/customers", big)},
		{"kubernetes/get", Kubernetes{}, req("kubernetes", kubeUp, "GET", "/api/v1/namespaces/prod/pods/web-1", "")},
		{"kubernetes/exec", Kubernetes{}, req("kubernetes", kubeUp, "POST", "/api/v1/namespaces/prod/pods/web-1/exec?command=sh&command=-c&command=id&stdin=true", "")},
		{"kubernetes/create-pod", Kubernetes{}, req("kubernetes", kubeUp, "POST", "/api/v1/namespaces/prod/pods", `{"kind":"Pod","spec":{"containers":[{"name":"a","image":"busybox","securityContext":{"privileged":true}}]}}`)},
		{"kubernetes/create-pod-64KiB", Kubernetes{}, req("kubernetes", kubeUp, "POST", "/api/v1/namespaces/prod/pods", bigPod)},
		{"azure/arm", Azure{}, req("azure", armUp, "POST", "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa/listKeys?api-version=2023-01-01", "")},
		{"azure/arm-put-64KiB", Azure{}, req("azure", armUp, "PUT", "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa?api-version=2023-01-01", bigARM)},
		{"azure/blob", Azure{}, req("azure", blobUp, "GET", "/c/dir/file.csv?sig=abc&sv=2022", "")},
		{"cosmos/query", Cosmos{}, req("cosmos", cosmosUp, "POST", "/dbs/shop/colls/orders/docs", `{"query":"SELECT * FROM c WHERE c.id = @id","parameters":[{"name":"@id","value":"1"}]}`, "x-ms-documentdb-isquery", "true")},
		{"cosmos/query-64KiB", Cosmos{}, req("cosmos", cosmosUp, "POST", "/dbs/shop/colls/orders/docs", bigCosmos, "x-ms-documentdb-isquery", "true")},
		{"graphql/query", GraphQL{}, req("graphql", gqlUp, "POST", "/graphql", `{"query":"query Q($id: ID!) { customer(id: $id) { id name orders { id total } } }","variables":{"id":"1"}}`)},
		{"graphql/mutation", GraphQL{}, req("graphql", gqlUp, "POST", "/graphql", `{"query":"mutation { a: updateCustomer(id: 1, name: \"x\") { id } ...F } fragment F on Mutation { deleteCustomer(id: 2) { id } }"}`)},
		{"graphql/query-64KiB", GraphQL{}, req("graphql", gqlUp, "POST", "/graphql", bigGQL)},
		{"sql-postgres/select", SQL{}, sqlReqD("postgres", jq("SELECT id, name FROM customers WHERE id = 42"))},
		{"sql-postgres/stacked", SQL{}, sqlReqD("postgres", jq("SELECT 1; WITH d AS (DELETE FROM customers RETURNING *) SELECT count(*) FROM d; DROP TABLE accounts"))},
		{"sql-postgres/select-64KiB", SQL{}, sqlReqD("postgres", jq(bigSQL))},
		{"sql-sqlite/select", SQL{}, sqlReqD("sqlite", jq("SELECT id, name FROM customers WHERE id = 42"))},
		{"sql-sqlite/select-schema", withSchema, sqlReqD("sqlite", jq("SELECT id, name FROM customers WHERE id = 42"))},
		{"sql-sqlite/comment-trick-schema", withSchema, sqlReqD("sqlite", jq("/* /* */ DELETE FROM customers; SELECT 1; DROP TABLE accounts"))},
		{"sql-sqlite/select-64KiB", SQL{}, sqlReqD("sqlite", jq(bigSQL))},
		{"sql-sqlite/select-64KiB-schema", withSchema, sqlReqD("sqlite", jq(bigSQL))},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			var lat latencies
			for b.Loop() {
				start := time.Now()
				_, err := c.in.Inspect(ctx, c.r)
				lat.add(time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
			}
			lat.report(b)
		})
	}
}

// latencies keeps a uniform sample (reservoir sampling, at most
// latencySamples) of single-call durations, so percentiles of a
// benchmark of millions of iterations cost bounded memory.
type latencies struct {
	n       int
	samples []time.Duration
	rng     *rand.Rand
}

const latencySamples = 1 << 16

func (l *latencies) add(d time.Duration) {
	l.n++
	if len(l.samples) < latencySamples {
		l.samples = append(l.samples, d)
		return
	}
	if l.rng == nil {
		l.rng = rand.New(rand.NewPCG(1, 2))
	}
	if i := l.rng.IntN(l.n); i < latencySamples {
		l.samples[i] = d
	}
}

// report adds p50-ns and p99-ns to b's results.
func (l *latencies) report(b *testing.B) {
	if len(l.samples) == 0 {
		return
	}
	s := slices.Clone(l.samples)
	slices.Sort(s)
	at := func(p float64) float64 { return float64(s[min(len(s)-1, int(p*float64(len(s))))].Nanoseconds()) }
	b.ReportMetric(at(0.50), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
}
