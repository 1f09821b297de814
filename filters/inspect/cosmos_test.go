package inspect

import "testing"

const cosmosUp = "https://acct.documents.azure.com"

func TestCosmos(t *testing.T) {
	for _, c := range []struct {
		method, target, body string
		headers              []string
		op, db, coll, query  string
		risk                 Risk
	}{
		{"GET", "/dbs", "", nil, "ListDatabases", "", "", "", RiskRead},
		{"GET", "/dbs/shop/colls/orders/docs/o1", "", nil, "ReadDocument", "shop", "orders", "", RiskRead},
		{"POST", "/dbs/shop/colls/orders/docs", `{"query":"SELECT * FROM c WHERE c.id = @id","parameters":[{"name":"@id","value":"1"}]}`,
			[]string{"x-ms-documentdb-isquery", "True", "content-type", "application/query+json"}, "QueryDocuments", "shop", "orders", "SELECT * FROM c WHERE c.id = @id", RiskRead},
		{"POST", "/dbs/shop/colls/orders/docs", `{"id":"o2"}`, nil, "CreateDocument", "shop", "orders", "", RiskWrite},
		{"POST", "/dbs/shop/colls/orders/docs", `{"id":"o2"}`, []string{"x-ms-documentdb-is-upsert", "true"}, "UpsertDocument", "shop", "orders", "", RiskWrite},
		{"PUT", "/dbs/shop/colls/orders/docs/o1", `{"id":"o1"}`, nil, "ReplaceDocument", "shop", "orders", "", RiskWrite},
		{"PATCH", "/dbs/shop/colls/orders/docs/o1", `{"operations":[]}`, nil, "PatchDocument", "shop", "orders", "", RiskWrite},
		{"DELETE", "/dbs/shop/colls/orders/docs/o1", "", nil, "DeleteDocument", "shop", "orders", "", RiskDestructive},
		{"DELETE", "/dbs/shop/colls/orders", "", nil, "DeleteContainer", "shop", "orders", "", RiskDestructive},
		{"DELETE", "/dbs/shop", "", nil, "DeleteDatabase", "shop", "", "", RiskDestructive},
		{"POST", "/dbs/shop/colls/orders/sprocs/bulkDelete", `["x"]`, nil, "ExecuteStoredProcedure", "shop", "orders", "", RiskWrite},
		{"POST", "/dbs/shop/colls/orders/sprocs", `{"id":"s","body":"function(){}"}`, nil, "CreateStoredProcedure", "shop", "orders", "", RiskAdmin},
		{"POST", "/dbs/shop/users/agent/permissions", `{}`, nil, "CreatePermission", "shop", "", "", RiskAdmin},
		{"GET", "/dbs/shop/users/agent/permissions/p1", "", nil, "ReadPermission", "shop", "", "", RiskAdmin},
		{"POST", "/dbs/shop/colls/orders/docs", `[{"operationType":"Create","resourceBody":{}},{"operationType":"Delete","id":"o1"}]`,
			[]string{"x-ms-cosmos-is-batch-request", "true"}, "BatchDocuments", "shop", "orders", "", RiskDestructive},
	} {
		a := inspectOK(t, Cosmos{}, req("cosmos", cosmosUp, c.method, c.target, c.body, c.headers...))
		d := a.Details
		if a.Kind != KindCosmos || a.Risk != c.risk || d["operation"] != c.op || d["database"] != c.db || d["container"] != c.coll || d["query"] != c.query {
			t.Errorf("%s %s: %s %v, want %s %s", c.method, c.target, a.Risk, d, c.risk, c.op)
		}
	}
	for _, c := range []struct {
		method, target, body string
		headers              []string
	}{
		{"POST", "/dbs/shop/colls/orders/docs", `{"query":"SELECT 1","query":"x"}`, []string{"x-ms-documentdb-isquery", "true"}},
		{"POST", "/dbs/shop/colls/orders/docs", `{"Query":"SELECT 1"}`, []string{"x-ms-documentdb-isquery", "true"}},
		{"GET", "/dbs/shop/tables/x", "", nil},
		{"POST", "/dbs/shop/colls/orders/docs", `[{"operationType":"Nuke"}]`, []string{"x-ms-cosmos-is-batch-request", "true"}},
		{"DELETE", "/dbs", "", nil},
	} {
		if a := inspectOK(t, Cosmos{}, req("cosmos", cosmosUp, c.method, c.target, c.body, c.headers...)); a.Risk != RiskUnknown {
			t.Errorf("%s %s %s: %s, want unknown", c.method, c.target, c.body, a.Risk)
		}
	}
}
