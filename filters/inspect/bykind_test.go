package inspect

import "testing"

func TestByKindDispatches(t *testing.T) {
	b := NewByKind()
	for kind, want := range map[string]string{
		"": KindHTTP, "http": KindHTTP, "something-new": KindHTTP, "kubernetes": KindKubernetes,
		"azure": KindAzure, "cosmos": KindCosmos, "sql-http": KindSQL, "graphql": KindGraphQL,
	} {
		a := inspectOK(t, b, req(kind, "https://x.example", "GET", "/", ""))
		if a.Kind != want {
			t.Errorf("kind %q: action kind %q, want %q", kind, a.Kind, want)
		}
	}
	b = NewByKind(WithInspector("kubernetes", HTTP{}), WithSQLiteSchema("CREATE TABLE t(a)"), WithDestructiveMutations("zap"))
	if a := inspectOK(t, b, req("kubernetes", "https://x", "GET", "/api/v1/secrets", "")); a.Kind != KindHTTP {
		t.Errorf("WithInspector: %s", a.Kind)
	}
	if a := inspectOK(t, b, req("graphql", "https://x", "POST", "/", `{"query":"mutation { zapAll }"}`)); a.Risk != RiskDestructive {
		t.Errorf("WithDestructiveMutations: %s", a.Risk)
	}
}
