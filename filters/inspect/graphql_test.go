package inspect

import (
	"slices"
	"testing"
)

const gqlUp = "https://api.example/graphql"

func TestGraphQL(t *testing.T) {
	for _, c := range []struct {
		method, target, body, ct string
		risk                     Risk
		fields                   []string
	}{
		{"POST", "/graphql", `{"query":"{ customers { id } }"}`, "", RiskRead, []string{"customers"}},
		{"POST", "/graphql", `{"query":"query Q { a: customers { id } me { name } }"}`, "", RiskRead, []string{"customers", "me"}},
		{"POST", "/graphql", `{"query":"subscription { orders { id } }"}`, "", RiskRead, []string{"orders"}},
		{"POST", "/graphql", `{"query":"mutation { createOrder(x: 1) { id } }"}`, "", RiskWrite, []string{"createOrder"}},
		{"POST", "/graphql", `{"query":"mutation { list: deleteCustomer(id: 1) }"}`, "", RiskDestructive, []string{"deleteCustomer"}},
		{"POST", "/graphql", `{"query":"mutation { ...F } fragment F on Mutation { removeAll }"}`, "", RiskDestructive, []string{"removeAll"}},
		{"POST", "/graphql", `{"query":"mutation { ... on Mutation { dropTable } }"}`, "", RiskDestructive, []string{"dropTable"}},
		{"POST", "/graphql", `[{"query":"{ a }"},{"query":"mutation { purgeCache }"}]`, "", RiskDestructive, []string{"a", "purgeCache"}},
		{"POST", "/graphql", "mutation { DeleteUser(id: 2) }", "application/graphql", RiskDestructive, []string{"DeleteUser"}},
		{"GET", "/graphql?query=" + mustEscape("{ __schema { types { name } } }"), "", "", RiskRead, []string{"__schema"}},
		{"POST", "/graphql", `{"query":"query A { a } mutation B { update }","operationName":"A"}`, "", RiskWrite, []string{"a", "update"}},
	} {
		var h []string
		if c.ct != "" {
			h = []string{"content-type", c.ct}
		}
		a := inspectOK(t, GraphQL{}, req("graphql", gqlUp, c.method, c.target, c.body, h...))
		var fields []string
		for _, o := range a.Details["operations"].([]any) {
			fields = append(fields, o.(map[string]any)["fields"].([]string)...)
		}
		if a.Kind != KindGraphQL || a.Risk != c.risk || !slices.Equal(fields, c.fields) {
			t.Errorf("%s: %s %v %q, want %s %v", c.body+c.target, a.Risk, fields, a.Summary, c.risk, c.fields)
		}
	}
	for _, body := range []string{
		`{"query":"mutation { "}`,
		`{"query":"{ a }","query":"mutation { deleteAll }"}`,
		`{"extensions":{"persistedQuery":{"sha256Hash":"abc"}}}`,
		`{"query":"mutation { ...F } fragment F on M { ...F }"}`,
		`{"query":"fragment F on M { a }"}`,
		`[]`,
		`{"query":"{ a }"`,
	} {
		if a := inspectOK(t, GraphQL{}, req("graphql", gqlUp, "POST", "/graphql", body)); a.Risk != RiskUnknown {
			t.Errorf("%s: %s, want unknown", body, a.Risk)
		}
	}
}

func TestGraphQLPrefixes(t *testing.T) {
	a := inspectOK(t, GraphQL{DestructivePrefixes: []string{"archive"}}, req("graphql", gqlUp, "POST", "/g", `{"query":"mutation { archiveOrder deleteX }"}`))
	if a.Risk != RiskDestructive {
		t.Errorf("%s", a.Risk)
	}
}
