package inspect

import (
	"slices"
	"testing"
)

const kubeUp = "https://kubernetes.default.svc"

func TestKubernetesPaths(t *testing.T) {
	for _, c := range []struct {
		method, target, body string
		headers              []string
		verb, group, res     string
		ns, name, sub        string
		risk                 Risk
	}{
		{"GET", "/api/v1/namespaces/default/pods", "", nil, "list", "", "pods", "default", "", "", RiskRead},
		{"GET", "/api/v1/namespaces/default/pods/web-1", "", nil, "get", "", "pods", "default", "web-1", "", RiskRead},
		{"GET", "/api/v1/namespaces/default/pods?watch=true", "", nil, "watch", "", "pods", "default", "", "", RiskRead},
		{"GET", "/api/v1/watch/namespaces/default/pods", "", nil, "watch", "", "pods", "default", "", "", RiskRead},
		{"GET", "/api/v1/nodes", "", nil, "list", "", "nodes", "", "", "", RiskRead},
		{"GET", "/apis/apps/v1/namespaces/prod/deployments/api", "", nil, "get", "apps", "deployments", "prod", "api", "", RiskRead},
		{"PATCH", "/apis/apps/v1/namespaces/prod/deployments/api/scale", `{"spec":{"replicas":3}}`, []string{"content-type", "application/merge-patch+json"}, "patch", "apps", "deployments", "prod", "api", "scale", RiskWrite},
		{"DELETE", "/apis/apps/v1/namespaces/prod/deployments/api", "", nil, "delete", "apps", "deployments", "prod", "api", "", RiskDestructive},
		{"DELETE", "/api/v1/namespaces/prod/pods", "", nil, "deletecollection", "", "pods", "prod", "", "", RiskDestructive},
		{"DELETE", "/api/v1/namespaces/prod", "", nil, "delete", "", "namespaces", "prod", "prod", "", RiskDestructive},
		{"PUT", "/api/v1/namespaces/prod/finalize", "{}", nil, "update", "", "namespaces", "prod", "prod", "finalize", RiskWrite},
		{"GET", "/api/v1/namespaces/prod/secrets/db", "", nil, "get", "", "secrets", "prod", "db", "", RiskAdmin},
		{"GET", "/api/v1/secrets", "", nil, "list", "", "secrets", "", "", "", RiskAdmin},
		{"POST", "/api/v1/namespaces/prod/pods/web-1/exec?command=sh&command=-c&command=id&stdout=true", "", nil, "create", "", "pods", "prod", "web-1", "exec", RiskAdmin},
		{"GET", "/api/v1/namespaces/prod/pods/web-1/exec?command=id", "", []string{"upgrade", "websocket"}, "get", "", "pods", "prod", "web-1", "exec", RiskAdmin},
		{"GET", "/api/v1/namespaces/prod/pods/web-1/attach", "", nil, "get", "", "pods", "prod", "web-1", "attach", RiskAdmin},
		{"POST", "/api/v1/namespaces/prod/pods/web-1/portforward", "", nil, "create", "", "pods", "prod", "web-1", "portforward", RiskAdmin},
		{"GET", "/api/v1/nodes/n1/proxy/configz", "", nil, "get", "", "nodes", "", "n1", "proxy", RiskAdmin},
		{"GET", "/api/v1/namespaces/prod/services/web:80/proxy/admin", "", nil, "get", "", "services", "prod", "web:80", "proxy", RiskAdmin},
		{"POST", "/api/v1/namespaces/prod/serviceaccounts/builder/token", "{}", nil, "create", "", "serviceaccounts", "prod", "builder", "token", RiskAdmin},
		{"PATCH", "/api/v1/namespaces/prod/pods/web-1/ephemeralcontainers", "{}", nil, "patch", "", "pods", "prod", "web-1", "ephemeralcontainers", RiskAdmin},
		{"POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "{}", nil, "create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", "", RiskAdmin},
		{"GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "", nil, "list", "rbac.authorization.k8s.io", "clusterroles", "", "", "", RiskRead},
		{"GET", "/api/v1/namespaces/default/pods", "", []string{"impersonate-user", "system:admin"}, "list", "", "pods", "default", "", "", RiskAdmin},
		{"GET", "/api/v1/namespaces/default/pods", "", []string{"impersonate-group", "system:masters"}, "list", "", "pods", "default", "", "", RiskAdmin},
		{"GET", "/api/v1/namespaces/default/pods", "", []string{"impersonate-extra-scopes", "x"}, "list", "", "pods", "default", "", "", RiskAdmin},
		{"POST", "/api/v1/namespaces/prod/pods", `{"kind":"Pod","spec":{"containers":[{"name":"a","image":"busybox"}]}}`, nil, "create", "", "pods", "prod", "", "", RiskWrite},
		{"POST", "/api/v1/namespaces/prod/pods", `{"spec":{"containers":[{"name":"a","securityContext":{"privileged":true}}]}}`, nil, "create", "", "pods", "prod", "", "", RiskAdmin},
		{"POST", "/api/v1/namespaces/prod/pods", `{"spec":{"volumes":[{"name":"h","hostPath":{"path":"/"}}]}}`, nil, "create", "", "pods", "prod", "", "", RiskAdmin},
		{"POST", "/apis/apps/v1/namespaces/prod/deployments", `{"spec":{"template":{"spec":{"volumes":[{"name":"s","secret":{"secretName":"db"}}]}}}}`, nil, "create", "apps", "deployments", "prod", "", "", RiskAdmin},
		{"POST", "/apis/batch/v1/namespaces/prod/jobs", `{"spec":{"template":{"spec":{"hostNetwork":true}}}}`, nil, "create", "batch", "jobs", "prod", "", "", RiskAdmin},
		{"POST", "/apis/batch/v1/namespaces/prod/jobs", "spec:\n  template:\n    spec:\n      hostPID: true\n", []string{"content-type", "application/yaml"}, "create", "batch", "jobs", "prod", "", "", RiskAdmin},
		{"PATCH", "/apis/apps/v1/namespaces/prod/daemonsets/x", `[{"op":"add","path":"/spec/template/spec/containers/0/securityContext/privileged","value":true}]`, []string{"content-type", "application/json-patch+json"}, "patch", "apps", "daemonsets", "prod", "x", "", RiskAdmin},
		{"POST", "/api/v1/namespaces/prod/pods", `{"spec":{"containers":[{"env":[{"valueFrom":{"secretKeyRef":{"name":"db","key":"pw"}}}]}]}}`, nil, "create", "", "pods", "prod", "", "", RiskAdmin},
		// a duplicate key must not hide the privileged one
		{"POST", "/api/v1/namespaces/prod/pods", `{"spec":{"containers":[{"securityContext":{"privileged":true,"privileged":false}}]}}`, nil, "create", "", "pods", "prod", "", "", RiskAdmin},
		{"POST", "/api/v1/namespaces/prod/pods", `{"spec":{"containers":[{"securityContext":{"Privileged":true}}]}}`, nil, "create", "", "pods", "prod", "", "", RiskAdmin},
		// path tricks: merged slashes, dot segments, encoded letters
		{"GET", "//api//v1//namespaces/prod/secrets", "", nil, "list", "", "secrets", "prod", "", "", RiskAdmin},
		{"GET", "/api/v1/namespaces/prod/configmaps/../secrets", "", nil, "list", "", "secrets", "prod", "", "", RiskAdmin},
		{"GET", "/api/v1/namespaces/prod/%73ecrets/db", "", nil, "get", "", "secrets", "prod", "db", "", RiskAdmin},
		{"GET", "/api/v1/namespaces/prod/pods/./web-1/exec", "", nil, "get", "", "pods", "prod", "web-1", "exec", RiskAdmin},
	} {
		r := req("kubernetes", kubeUp, c.method, c.target, c.body, c.headers...)
		a := inspectOK(t, Kubernetes{}, r)
		d := a.Details
		if a.Kind != KindKubernetes || a.Risk != c.risk || d == nil || d["verb"] != c.verb || d["group"] != c.group ||
			d["resource"] != c.res || d["namespace"] != c.ns || d["name"] != c.name || d["subresource"] != c.sub {
			t.Errorf("%s %s:\n got %s %v %q\nwant %s verb=%s group=%s resource=%s ns=%s name=%s sub=%s", c.method, c.target, a.Risk, d, a.Summary,
				c.risk, c.verb, c.group, c.res, c.ns, c.name, c.sub)
		}
	}
}

func TestKubernetesExecCommand(t *testing.T) {
	a := inspectOK(t, Kubernetes{}, req("kubernetes", kubeUp, "POST", "/api/v1/namespaces/p/pods/w/exec?command=sh&command=-c&command=cat+/etc/shadow", ""))
	if got := a.Details["command"].([]string); !slices.Equal(got, []string{"sh", "-c", "cat /etc/shadow"}) {
		t.Errorf("command %q", got)
	}
	if want := "kubernetes create pods/exec w in namespace p on c: sh -c cat /etc/shadow [exec into pods]"; a.Summary != want {
		t.Errorf("summary %q, want %q", a.Summary, want)
	}
}

func TestKubernetesUnknown(t *testing.T) {
	for _, c := range []struct{ method, target, body string }{
		{"GET", "/api/v1/namespaces/prod/Secrets", ""},           // case: not a resource the API server has
		{"GET", "/api/v1/namespaces/prod/secrets./db", ""},       // trailing dot
		{"GET", "/api/v1/namespaces/prod/ѕecrets", ""},           // Cyrillic s
		{"GET", "/api/v1/namespaces/prod/pods%2Fexec", ""},       // encoded slash
		{"GET", "/api/v1/namespaces/prod/%2e%2e/secrets", ""},    // encoded dot segment
		{"GET", "/api/v1/namespaces/prod/pods/a/exec/extra", ""}, // parts after a subresource
		{"GET", "/../api/v1/secrets", ""},                        // above the root
		{"BREW", "/api/v1/namespaces/prod/pods", ""},             // not a verb
		{"GET", "/metrics/cadvisor", ""},                         // not an API path
		{"POST", "/api/v1/namespaces/prod/pods", `{"spec":`},     // body cut
		{"POST", "/api/v1/namespaces/prod/pods", "\x0a\x02k8s"},  // protobuf without content type
		{"GET", "/apis/Apps/v1/deployments", ""},                 // group case
		{"GET", "/api/v1/namespaces/prod/pods%00/x", ""},         // NUL
		{"POST", "/api/v1/namespaces/p/pods", "{\"spec\":{}}{}"}, // two documents
	} {
		r := req("kubernetes", kubeUp, c.method, c.target, c.body)
		if a := inspectOK(t, Kubernetes{}, r); a.Risk != RiskUnknown {
			t.Errorf("%s %s: %s %q, want unknown", c.method, c.target, a.Risk, a.Summary)
		}
	}
	// A body Envoy did not send is never taken for an empty one.
	r := req("kubernetes", kubeUp, "POST", "/api/v1/namespaces/p/pods", "")
	r.BodyBytes = 120
	if a := inspectOK(t, Kubernetes{}, r); a.Risk != RiskUnknown {
		t.Errorf("missing body: %s", a.Risk)
	}
}

func TestKubernetesUpstreamBasePath(t *testing.T) {
	r := req("kubernetes", "https://rancher.example/k8s/clusters/c-1", "GET", "/k8s/clusters/c-1/api/v1/namespaces/a/secrets", "")
	if a := inspectOK(t, Kubernetes{}, r); a.Risk != RiskAdmin || a.Details["resource"] != "secrets" {
		t.Errorf("%s %v", a.Risk, a.Details)
	}
}
