package inspect

import (
	"context"
	"strings"
	"testing"

	"github.com/custos-dev/custos/filters/request"
)

// BenchmarkInspect is the cost of inspecting one request of each kind, for
// a typical request and for a 64 KiB body, beside inspect.HTTP as the
// baseline. Run with -benchmem.
func BenchmarkInspect(b *testing.B) {
	big := strings.Repeat("x", 64<<10)
	bigSQL := "SELECT id, name FROM customers WHERE name IN ('" + strings.Repeat("a', '", 64<<10/5) + "a')"
	bigPod := `{"kind":"Pod","metadata":{"annotations":{"a":"` + big + `"}},"spec":{"containers":[{"name":"a","image":"busybox"}]}}`
	bigGQL := `{"query":"{ customers(filter: \"` + big + `\") { id name } }"}`
	bigCosmos := `{"query":"SELECT * FROM c WHERE c.note = '` + big + `'"}`
	jq := func(s string) string { b, _ := jsonMarshal(map[string]string{"query": s}); return string(b) }
	sqlReqD := func(d, body string) *request.Request {
		r := req("sql-http", "http://db", "POST", "/query", body)
		r.Connection.Dialect, r.Connection.StatementFrom = d, "json:/query"
		return r
	}
	for _, c := range []struct {
		name string
		in   Inspector
		r    *request.Request
	}{
		{"http", HTTP{}, req("http", "http://x", "DELETE", "/api/customers/42", "")},
		{"kubernetes/get", Kubernetes{}, req("kubernetes", kubeUp, "GET", "/api/v1/namespaces/prod/pods/web-1", "")},
		{"kubernetes/create-pod", Kubernetes{}, req("kubernetes", kubeUp, "POST", "/api/v1/namespaces/prod/pods", `{"kind":"Pod","spec":{"containers":[{"name":"a","image":"busybox","securityContext":{"privileged":true}}]}}`)},
		{"kubernetes/create-pod-64KiB", Kubernetes{}, req("kubernetes", kubeUp, "POST", "/api/v1/namespaces/prod/pods", bigPod)},
		{"azure/arm", Azure{}, req("azure", armUp, "POST", "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa/listKeys?api-version=2023-01-01", "")},
		{"azure/blob", Azure{}, req("azure", blobUp, "GET", "/c/dir/file.csv?sig=abc&sv=2022", "")},
		{"cosmos/query", Cosmos{}, req("cosmos", cosmosUp, "POST", "/dbs/shop/colls/orders/docs", `{"query":"SELECT * FROM c WHERE c.id = @id","parameters":[{"name":"@id","value":"1"}]}`, "x-ms-documentdb-isquery", "true")},
		{"cosmos/query-64KiB", Cosmos{}, req("cosmos", cosmosUp, "POST", "/dbs/shop/colls/orders/docs", bigCosmos, "x-ms-documentdb-isquery", "true")},
		{"graphql/query", GraphQL{}, req("graphql", gqlUp, "POST", "/graphql", `{"query":"query Q($id: ID!) { customer(id: $id) { id name orders { id total } } }","variables":{"id":"1"}}`)},
		{"graphql/query-64KiB", GraphQL{}, req("graphql", gqlUp, "POST", "/graphql", bigGQL)},
		{"sql-postgres/select", SQL{}, sqlReqD("postgres", jq("SELECT id, name FROM customers WHERE id = 42"))},
		{"sql-postgres/select-64KiB", SQL{}, sqlReqD("postgres", jq(bigSQL))},
		{"sql-sqlite/select", SQL{}, sqlReqD("sqlite", jq("SELECT id, name FROM customers WHERE id = 42"))},
		{"sql-sqlite/select-64KiB", SQL{}, sqlReqD("sqlite", jq(bigSQL))},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				if _, err := c.in.Inspect(ctx, c.r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
