package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseErrors parses src and returns its Errors, failing the test if Parse
// succeeds or returns another error type.
func parseErrors(t *testing.T, src string) Errors {
	t.Helper()
	cfg, err := Parse([]byte(src))
	if err == nil {
		t.Fatalf("Parse succeeded, want errors; config: %+v", cfg)
	}
	if cfg != nil {
		t.Errorf("Parse returned a config with errors")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error %T (%v) is not Errors", err, err)
	}
	return errs
}

// base is a minimal valid configuration that test cases extend.
const base = `
identity:
  issuers:
    - issuer: https://issuer.example.com/
      audiences: [api://custos]
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		path string
		line int // 0: not checked
		msg  string
		// secret, when set, must not appear anywhere in the error text.
		secret string
	}{
		// File-level problems.
		{name: "empty file", src: "", msg: "empty configuration"},
		{name: "only comments", src: "# nothing here\n\n", msg: "empty configuration"},
		{name: "null document", src: "---\n~\n", msg: "empty configuration"},
		{name: "syntax error", src: "listen:\n  grpc: [127.0.0.1:9000\naudit:\n  dir: x\n", line: 2, msg: "invalid YAML"},
		{name: "syntax error on line 1", src: "listen: grpc: 1\n", line: 1, msg: "invalid YAML: mapping values are not allowed"},
		{name: "syntax error bad indentation", src: "listen:\n  grpc: 127.0.0.1:1\n xds: 127.0.0.1:2\n", line: 3, msg: "invalid YAML: did not find expected key"},
		{name: "syntax error list after mapping", src: "audit:\n  dir: a\n- b\n", line: 3, msg: "invalid YAML"},
		{name: "syntax error tab", src: "listen:\n\tgrpc: x\n", line: 2, msg: "invalid YAML"},
		{name: "unknown anchor", src: "listen:\n  grpc: 127.0.0.1:1\n  xds: *nope\n", line: 3, msg: "unknown anchor"},
		{name: "two documents", src: "audit:\n  dir: a\n---\naudit:\n  dir: b\n", line: 3, msg: "single document"},
		{name: "root not a mapping", src: "- listen\n- audit\n", path: "", line: 1, msg: "expected a mapping, got a list"},

		// Structure: unknown keys, wrong types, duplicates.
		{name: "unknown top-level key with suggestion", src: "listn:\n  grpc: 127.0.0.1:9000\n", path: "listn", line: 1, msg: `unknown key "listn" (did you mean "listen"?)`},
		{name: "unknown nested key with suggestion", src: "connections:\n  - name: a\n    upstrem: http://127.0.0.1:1\n", path: "connections[0].upstrem", line: 3, msg: `unknown key "upstrem" (did you mean "upstream"?)`},
		{name: "unknown key lists known keys", src: "audit:\n  directory: x\n", path: "audit.directory", line: 2, msg: "known keys: dir"},
		{name: "unknown key value never shown", src: "dev:\n  token_file: /run/secrets/hunter2\n", path: "dev.token_file", line: 2, msg: "unknown key", secret: "hunter2"},
		{name: "list where mapping expected", src: "listen: [127.0.0.1:9000]\n", path: "listen", line: 1, msg: "expected a mapping, got a list"},
		{name: "mapping where list expected", src: "connections:\n  name: a\n", path: "connections", line: 2, msg: "expected a list, got a mapping"},
		{name: "string for bool", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    forward_token: \"yes\"\n", path: "connections[0].forward_token", line: 4, msg: `expected a boolean (true or false), got string "yes"`},
		{name: "integer for string", src: "listen:\n  grpc: 9000\n", path: "listen.grpc", line: 2, msg: `expected a string, got integer 9000 (quote it: "9000")`},
		{name: "list for string", src: "policy:\n  bundle: [a, b]\n", path: "policy.bundle", line: 2, msg: "expected a string, got a list"},
		{name: "duplicate top-level key", src: "audit:\n  dir: a\naudit:\n  dir: b\n", path: "audit", line: 3, msg: `duplicate key "audit" (first at line 1)`},
		{name: "duplicate nested key", src: "listen:\n  grpc: 127.0.0.1:1\n  grpc: 127.0.0.1:2\n", path: "listen.grpc", line: 3, msg: `duplicate key "grpc" (first at line 2)`},
		{name: "duplicate label key", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    labels:\n      env: a\n      env: b\n", path: "connections[0].labels.env", line: 6, msg: "duplicate key"},
		{name: "non-string key", src: "1: x\n", path: "", line: 1, msg: "keys must be strings, got integer 1"},
		{name: "merge key", src: "x: &x {grpc: 127.0.0.1:1}\n", path: "x", line: 1, msg: "unknown key"},
		{name: "merge key unsupported", src: "listen:\n  <<: {grpc: 127.0.0.1:1}\n", path: "listen", line: 2, msg: "merge keys (<<) are not supported"},
		{name: "connection not a mapping", src: "connections:\n  - customers\n", path: "connections[0]", line: 2, msg: `expected a mapping, got string "customers"`},
		{name: "wrong type is not also reported as missing", src: "connections:\n  - name: 7\n    upstream: http://127.0.0.1:1\n", path: "connections[0].name", line: 2, msg: "expected a string, got integer 7"},

		// listen.
		{name: "listen address without port", src: "listen:\n  http: localhost\n", path: "listen.http", line: 2, msg: `"localhost" is not a valid address: use host:port`},
		{name: "listen port out of range", src: "listen:\n  xds: 127.0.0.1:70000\n", path: "listen.xds", line: 2, msg: "port 70000 is out of range (0-65535)"},
		{name: "listen port not a number", src: "listen:\n  grpc: 127.0.0.1:http\n", path: "listen.grpc", line: 2, msg: `port "http" is not a number`},
		{name: "listen bad host", src: "listen:\n  grpc: bad_host:9000\n", path: "listen.grpc", line: 2, msg: `"bad_host" is not a valid host name or IP address`},
		{name: "listen empty", src: "listen:\n  dataplane: \"\"\n", path: "listen.dataplane", line: 2, msg: "is not a valid address"},
		{name: "listen conflict", src: "listen:\n  grpc: 127.0.0.1:9000\n  xds: 127.0.0.1:9000\n", path: "listen.xds", line: 3, msg: `"127.0.0.1:9000" conflicts with listen.grpc`},
		{name: "listen conflict with default", src: "listen:\n  dataplane: 127.0.0.1:9090\n", path: "listen.dataplane", line: 2, msg: "conflicts with listen.http"},
		{name: "listen conflict wildcard", src: "listen:\n  grpc: 0.0.0.0:7000\n  http: localhost:7000\n", path: "listen.http", line: 3, msg: "conflicts with listen.grpc"},
		{name: "listen conflict localhost", src: "listen:\n  grpc: 127.0.0.1:7000\n  http: localhost:7000\n", path: "listen.http", line: 3, msg: "conflicts with listen.grpc"},

		// identity.
		{name: "issuer not https", src: "identity:\n  issuers:\n    - issuer: http://issuer.example.com/\n      audiences: [a]\n", path: "identity.issuers[0].issuer", line: 3, msg: `"http://issuer.example.com/" must use https (http is allowed only for 127.0.0.1 or localhost)`},
		{name: "issuer other scheme", src: "identity:\n  issuers:\n    - issuer: ldap://issuer.example.com/\n      audiences: [a]\n", path: "identity.issuers[0].issuer", line: 3, msg: "must be an https URL"},
		{name: "issuer not absolute", src: "identity:\n  issuers:\n    - issuer: issuer.example.com\n      audiences: [a]\n", path: "identity.issuers[0].issuer", line: 3, msg: "is not an absolute URL"},
		{name: "issuer required", src: "identity:\n  issuers:\n    - audiences: [a]\n", path: "identity.issuers[0].issuer", line: 3, msg: "is required"},
		{name: "issuer duplicate", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n    - issuer: https://a.example/\n      audiences: [b]\n", path: "identity.issuers[1].issuer", line: 5, msg: `duplicate issuer "https://a.example/" (first at identity.issuers[0])`},
		{name: "audiences missing", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n", path: "identity.issuers[0].audiences", line: 3, msg: "at least one audience is required"},
		{name: "audiences empty list", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: []\n", path: "identity.issuers[0].audiences", line: 4, msg: "at least one audience is required"},
		{name: "discovery_url not https", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      discovery_url: http://a.example/.well-known/openid-configuration\n", path: "identity.issuers[0].discovery_url", line: 5, msg: "must use https"},
		{name: "discovery_url not the document", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      discovery_url: https://login.example/tenant\n", path: "identity.issuers[0].discovery_url", line: 5, msg: "ending in /.well-known/openid-configuration"},
		{name: "algorithm none", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      algorithms: [RS256, none]\n", path: "identity.issuers[0].algorithms[1]", line: 5, msg: `"none" is never accepted`},
		{name: "algorithm HMAC", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      algorithms:\n        - HS256\n", path: "identity.issuers[0].algorithms[0]", line: 6, msg: `"HS256" is never accepted`},
		{name: "algorithm unknown", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      algorithms: [RS255]\n", path: "identity.issuers[0].algorithms[0]", line: 5, msg: `"RS255" is not a valid algorithm`},
		{name: "algorithm duplicate", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      algorithms: [ES256, ES256]\n", path: "identity.issuers[0].algorithms[1]", line: 5, msg: `duplicate algorithm "ES256"`},
		{name: "algorithms empty", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      algorithms: []\n", path: "identity.issuers[0].algorithms", line: 5, msg: "at least one algorithm is required"},
		{name: "clock_skew negative", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      clock_skew: -1s\n", path: "identity.issuers[0].clock_skew", line: 5, msg: "must not be negative"},
		{name: "clock_skew too large", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      clock_skew: 1h\n", path: "identity.issuers[0].clock_skew", line: 5, msg: "exceeds the maximum of 5m0s"},
		{name: "clock_skew not a duration", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      clock_skew: 60\n", path: "identity.issuers[0].clock_skew", line: 5, msg: "is not a duration"},
		{name: "claims unknown key", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      claims: {group: grp}\n", path: "identity.issuers[0].claims.group", line: 5, msg: `did you mean "groups"?`},
		{name: "claims bad path", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      claims: {roles: realm_access..roles}\n", path: "identity.issuers[0].claims.roles", line: 5, msg: "is not a claim name"},
		{name: "group name empty", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      group_names:\n        g1: \"\"\n", path: "identity.issuers[0].group_names.g1", line: 6, msg: "must not be empty"},
		{name: "issuer unknown key", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a]\n      clockskew: 1s\n", path: "identity.issuers[0].clockskew", line: 5, msg: `did you mean "clock_skew"?`},
		{name: "audience empty string", src: "identity:\n  issuers:\n    - issuer: https://a.example/\n      audiences: [a, \"\"]\n", path: "identity.issuers[0].audiences[1]", line: 4, msg: "must not be empty"},

		// connections.
		{name: "connection name required", src: "connections:\n  - upstream: http://127.0.0.1:1\n", path: "connections[0].name", line: 2, msg: "is required"},
		{name: "connection name invalid", src: "connections:\n  - name: Customers\n    upstream: http://127.0.0.1:1\n", path: "connections[0].name", line: 2, msg: `"Customers" is not a valid connection name`},
		{name: "connection name trailing hyphen", src: "connections:\n  - name: a-\n    upstream: http://127.0.0.1:1\n", path: "connections[0].name", line: 2, msg: "is not a valid connection name"},
		{name: "connection name duplicate", src: "connections:\n  - name: customers\n    upstream: http://127.0.0.1:1\n  - name: other\n    upstream: http://127.0.0.1:2\n  - name: customers\n    upstream: http://127.0.0.1:3\n", path: "connections[2].name", line: 6, msg: `duplicate connection name "customers" (first at connections[0])`},
		{name: "upstream required", src: "connections:\n  - name: a\n", path: "connections[0].upstream", line: 2, msg: "is required"},
		{name: "upstream scheme", src: "connections:\n  - name: a\n    upstream: ftp://x\n", path: "connections[0].upstream", line: 3, msg: `"ftp://x" must be an http or https URL`},
		{name: "upstream not absolute", src: "connections:\n  - name: a\n    upstream: 127.0.0.1:8081\n", path: "connections[0].upstream", line: 3, msg: `"127.0.0.1:8081" is not an absolute URL`},
		{name: "upstream no host", src: "connections:\n  - name: a\n    upstream: http:///path\n", path: "connections[0].upstream", line: 3, msg: "has no host"},
		{name: "upstream query", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1/?code=s3cr3t\n", path: "connections[0].upstream", line: 3, msg: "must not have a query string", secret: "s3cr3t"},
		{name: "upstream userinfo", src: "connections:\n  - name: a\n    upstream: https://admin:hunter2@db.internal/\n", path: "connections[0].upstream", line: 3, msg: "must not contain credentials", secret: "hunter2"},
		{name: "upstream userinfo bad scheme", src: "connections:\n  - name: a\n    upstream: ftp://admin:hunter2@db.internal/\n", path: "connections[0].upstream", line: 3, msg: "must not contain credentials", secret: "hunter2"},
		{name: "upstream fragment", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1/#top\n", path: "connections[0].upstream", line: 3, msg: "must not have a fragment"},
		{name: "upstream bad port", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:99999/\n", path: "connections[0].upstream", line: 3, msg: "port 99999 is out of range"},
		{name: "host invalid", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    hosts: [ok.internal, bad_name.internal]\n", path: "connections[0].hosts[1]", line: 4, msg: `"bad_name.internal" is not a valid host`},
		{name: "host bad port", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    hosts: [\"a.internal:x\"]\n", path: "connections[0].hosts[0]", line: 4, msg: "is not a valid host"},
		{name: "host duplicate across connections", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    hosts: [svc.internal]\n  - name: b\n    upstream: http://127.0.0.1:2\n    hosts: [\"SVC.internal:8443\"]\n", path: "connections[1].hosts[0]", line: 7, msg: `duplicate host "SVC.internal:8443" (first at connections[0].hosts[0])`},
		{name: "kind invalid", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    kind: sql_http\n", path: "connections[0].kind", line: 4, msg: `"sql_http" is not a valid kind (use one of: http, kubernetes, azure, cosmos, sql-http, graphql); did you mean "sql-http"?`},
		{name: "masking unknown profile", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    masking: pcii\n", path: "connections[0].masking", line: 4, msg: `unknown masking profile "pcii" (did you mean "pci"?)`},
		{name: "policy_mode invalid", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    policy_mode: audit\n", path: "connections[0].policy_mode", line: 4, msg: `"audit" is not a valid policy_mode (use one of: enforce, shadow)`},
		{name: "dialect only for sql-http", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    dialect: sqlite\n", path: "connections[0].dialect", line: 4, msg: `only valid for kind sql-http (this connection's kind is "http")`},
		{name: "statement_from only for sql-http", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    kind: graphql\n    statement_from: body\n", path: "connections[0].statement_from", line: 5, msg: `only valid for kind sql-http (this connection's kind is "graphql")`},
		{name: "dialect invalid", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    kind: sql-http\n    dialect: mysql\n", path: "connections[0].dialect", line: 5, msg: `"mysql" is not a valid dialect (use one of: postgres, sqlite)`},
		{name: "statement_from pointer without slash", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    kind: sql-http\n    statement_from: json:query\n", path: "connections[0].statement_from", line: 5, msg: `"json:query" is not a valid statement source: the JSON pointer must start with "/"`},
		{name: "statement_from bad pointer escape", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    kind: sql-http\n    statement_from: json:/a~2b\n", path: "connections[0].statement_from", line: 5, msg: "invalid JSON pointer escape"},
		{name: "statement_from empty param", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    kind: sql-http\n    statement_from: \"query:\"\n", path: "connections[0].statement_from", line: 5, msg: "no parameter name"},
		{name: "statement_from unknown source", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    kind: sql-http\n    statement_from: header:X-Query\n", path: "connections[0].statement_from", line: 5, msg: "use json:/POINTER, query:PARAM, form:PARAM or body"},
		{name: "label value not a string", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    labels:\n      tier: 1\n", path: "connections[0].labels.tier", line: 5, msg: `expected a string, got integer 1 (quote it: "1")`},
		{name: "label value null", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    labels:\n      env:\n", path: "connections[0].labels.env", line: 5, msg: "expected a string, got no value (null)"},
		{name: "label key quoted in path", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    labels:\n      app.kubernetes.io/name: [x]\n", path: `connections[0].labels["app.kubernetes.io/name"]`, line: 5, msg: "expected a string, got a list"},
		{name: "label secret value never shown", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    labels:\n      db_password: 8675309\n", path: "connections[0].labels.db_password", line: 5, msg: "expected a string, got an integer", secret: "8675309"},
		{name: "labels not a mapping", src: "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    labels: [env]\n", path: "connections[0].labels", line: 4, msg: "expected a mapping, got a list"},

		// listen.tls.
		{name: "tls without a key", src: "listen:\n  tls:\n    cert_file: c.crt\n    client_ca_file: ca.crt\n", path: "listen.tls.key_file", line: 2, msg: "is required"},
		{name: "tls and insecure", src: "listen:\n  insecure: true\n  tls:\n    cert_file: c\n    key_file: k\n    client_ca_file: ca\n", path: "listen.insecure", line: 2, msg: "exclude each other"},
		{name: "tls identity invalid", src: "listen:\n  tls:\n    cert_file: c\n    key_file: k\n    client_ca_file: ca\n    allowed_clients: [\"not an id\"]\n", path: "listen.tls.allowed_clients[0]", line: 6, msg: "neither a URI SAN"},
		{name: "tls unknown key", src: "listen:\n  tls:\n    cert_file: c\n    key_file: k\n    client_ca_file: ca\n    insecure: true\n", path: "listen.tls.insecure", line: 6, msg: "unknown key"},

		// approvals.
		{name: "approvals mode invalid", src: "approvals:\n  mode: wait\n", path: "approvals.mode", line: 2, msg: `"wait" is not a valid mode (use one of: hold, async)`},
		{name: "timeout not a duration", src: "approvals:\n  timeout: 5 minutes\n", path: "approvals.timeout", line: 2, msg: `"5 minutes" is not a duration (use Go syntax such as 30s or 5m)`},
		{name: "timeout bare number", src: "approvals:\n  timeout: 300\n", path: "approvals.timeout", line: 2, msg: "300 is not a duration"},
		{name: "timeout zero", src: "approvals:\n  timeout: 0s\n", path: "approvals.timeout", line: 2, msg: "must be greater than zero"},
		{name: "timeout negative", src: "approvals:\n  timeout: -1m\n", path: "approvals.timeout", line: 2, msg: "must be greater than zero"},
		{name: "timeout too long", src: "approvals:\n  timeout: 25h\n", path: "approvals.timeout", line: 2, msg: "exceeds the maximum of 24h"},
		{name: "hold too long", src: "approvals:\n  timeout: 2h\n", path: "approvals.timeout", line: 2, msg: "exceeds the maximum of 59m for mode hold"},
		{name: "hold key too long", src: "approvals:\n  hold: 2h\n", path: "approvals.hold", line: 2, msg: "exceeds the maximum of 59m for mode hold"},
		{name: "hold and timeout", src: "approvals:\n  hold: 2m\n  timeout: 2m\n", path: "approvals.timeout", msg: "give one of them"},
		{name: "expiry too long", src: "approvals:\n  expiry: 1000h\n", path: "approvals.expiry", line: 2, msg: "exceeds the maximum of 720h"},
		{name: "store other URL", src: "approvals:\n  store: mysql://db/x\n", path: "approvals.store", line: 2, msg: "must be postgres://"},
		{name: "ui base with a path", src: "approvals:\n  ui:\n    issuer: https://login.example/t/v2.0\n    client_id: c\n    base_url: https://custos.example/ui\n", path: "approvals.ui.base_url", line: 5, msg: "must be an origin"},
		{name: "ui plain http", src: "approvals:\n  ui:\n    issuer: https://login.example/t/v2.0\n    client_id: c\n    base_url: http://custos.example\n", path: "approvals.ui.base_url", line: 5, msg: "must use https"},
		{name: "ui no client", src: "approvals:\n  ui:\n    issuer: https://login.example/t/v2.0\n    base_url: https://custos.example\n", path: "approvals.ui.client_id", msg: "is required"},
		{name: "webhook http", src: "approvals:\n  webhooks:\n    - url: http://hooks.example/x\n      secret_env: S\n", path: "approvals.webhooks[0].url", line: 3, msg: "must use https"},
		{name: "webhook no secret", src: "approvals:\n  webhooks:\n    - url: https://hooks.example/x\n", path: "approvals.webhooks[0]", line: 3, msg: "give exactly one of secret_file and secret_env"},

		// masking.
		{name: "profile name invalid", src: "masking:\n  profiles:\n    Cards:\n      entities: [card]\n", path: "masking.profiles.Cards", line: 3, msg: `"Cards" is not a valid profile name`},
		{name: "profile redefines built-in", src: "masking:\n  profiles:\n    pci:\n      entities: [card]\n", path: "masking.profiles.pci", line: 3, msg: `"pci" is a built-in profile and cannot be redefined`},
		{name: "profile without entities", src: "masking:\n  profiles:\n    cards-only: {}\n", path: "masking.profiles.cards-only.entities", line: 3, msg: "at least one entity is required"},
		{name: "profile unknown entity", src: "masking:\n  profiles:\n    cards-only:\n      entities:\n        - crad\n", path: "masking.profiles.cards-only.entities[0]", line: 5, msg: `unknown entity "crad" (did you mean "card"?)`},
		{name: "profile duplicate entity", src: "masking:\n  profiles:\n    cards-only:\n      entities: [card, card]\n", path: "masking.profiles.cards-only.entities[1]", line: 4, msg: `duplicate entity "card"`},
		{name: "profile unknown key", src: "masking:\n  profiles:\n    cards-only:\n      entites: [card]\n", path: "masking.profiles.cards-only.entites", line: 4, msg: `did you mean "entities"?`},

		// policy.
		{name: "policy bundle plain http", src: "policy:\n  bundle: http://bundles.example/b.tar.gz\n", path: "policy.bundle", line: 2, msg: "must use https"},
		{name: "policy bundle unknown builtin", src: "policy:\n  bundle: builtin:strict\n", path: "policy.bundle", line: 2, msg: "is not a built-in bundle"},
		{name: "policy poll too fast", src: "policy:\n  bundle: ./p\n  poll_interval: 1ms\n", path: "policy.poll_interval", line: 3, msg: "must be between 100ms and 1h0m0s"},
		{name: "policy decision cache negative", src: "policy:\n  bundle: ./p\n  decision_cache: -1\n", path: "policy.decision_cache", line: 3, msg: "must be between 0 (no cache) and 1048576 decisions"},
		{name: "policy decision cache not a number", src: "policy:\n  bundle: ./p\n  decision_cache: lots\n", path: "policy.decision_cache", line: 3, msg: "integer"},
		{name: "policy key id without key", src: "policy:\n  bundle: ./p\n  verification_key_id: k\n", path: "policy.verification_key_id", line: 3, msg: "is set without verification_key_file"},
		{name: "policy key for builtin", src: "policy:\n  bundle: builtin:default\n  verification_key_file: k.pem\n", path: "policy.verification_key_file", line: 3, msg: "names no directory or bundle server"},
		{name: "policy bad algorithm", src: "policy:\n  bundle: ./p\n  verification_key_file: k.pem\n  verification_algorithm: none\n", path: "policy.verification_algorithm", line: 4, msg: "is not a valid bundle signature algorithm"},
		{name: "policy unknown key", src: "policy:\n  bundel: ./p\n", path: "policy.bundel", line: 2, msg: `did you mean "bundle"?`},

		// audit.
		{name: "audit durability", src: "audit:\n  durability: eventually\n", path: "audit.durability", line: 2, msg: "is not a valid durability"},
		{name: "audit on_failure", src: "audit:\n  on_failure: ignore\n", path: "audit.on_failure", line: 2, msg: "is not a valid on_failure"},
		{name: "audit key inside the log", src: "audit:\n  dir: /var/log/custos\n  signing_key_file: /var/log/custos/keys/a.key\n", path: "audit.signing_key_file", line: 3, msg: "must be kept apart from audit.dir"},
		{name: "audit previous key alone", src: "audit:\n  previous_signing_key_file: old.key\n", path: "audit.previous_signing_key_file", line: 2, msg: "is set without signing_key_file"},
		{name: "audit kafka no brokers", src: "audit:\n  kafka:\n    events_topic: e\n", path: "audit.kafka.brokers", msg: "at least one broker"},
		{name: "audit kafka bad broker", src: "audit:\n  kafka:\n    brokers: [kafka]\n", path: "audit.kafka.brokers[0]", line: 3, msg: "is not a host:port"},
		{name: "audit kafka bad topic", src: "audit:\n  kafka:\n    brokers: [k:9092]\n    events_topic: \"a b\"\n", path: "audit.kafka.events_topic", line: 4, msg: "is not a Kafka topic name"},
		{name: "audit kafka same topics", src: "audit:\n  kafka:\n    brokers: [k:9092]\n    events_topic: t\n    checkpoints_topic: t\n", path: "audit.kafka.checkpoints_topic", line: 5, msg: "must differ"},
		{name: "connection audit_on_failure", src: "connections:\n  - name: c\n    upstream: http://127.0.0.1:1\n    audit_on_failure: maybe\n", path: "connections[0].audit_on_failure", line: 4, msg: "is not a valid audit_on_failure"},

		// audit and dev.
		{name: "audit dir empty", src: "audit:\n  dir: \"\"\n", path: "audit.dir", line: 2, msg: "must not be empty"},
		{name: "dev issuer not a bool", src: "dev:\n  issuer: 1\n", path: "dev.issuer", line: 2, msg: "expected a boolean (true or false), got integer 1"},
		{name: "dev demo_upstream invalid", src: "dev:\n  demo_upstream: http://127.0.0.1:8081\n", path: "dev.demo_upstream", line: 2, msg: "is not a valid address"},
		{name: "dev demo_upstream conflict", src: "dev:\n  demo_upstream: 127.0.0.1:9000\n", path: "dev.demo_upstream", line: 2, msg: "conflicts with listen.grpc"},
		{name: "dev not a mapping", src: "dev: true\n", path: "dev", line: 1, msg: "expected a mapping, got boolean true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, tt.src)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			e := errs[0]
			if e.Path != tt.path {
				t.Errorf("path = %q, want %q (error: %v)", e.Path, tt.path, e)
			}
			if tt.line != 0 && e.Line != tt.line {
				t.Errorf("line = %d, want %d (error: %v)", e.Line, tt.line, e)
			}
			if !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("message %q does not contain %q", e.Msg, tt.msg)
			}
			if tt.secret != "" && strings.Contains(errs.Error(), tt.secret) {
				t.Errorf("error %q reveals %q", errs.Error(), tt.secret)
			}
		})
	}
}

func TestParseAcceptsEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		src  string
	}{
		{"empty mapping", "{}\n"},
		{"only base", base},
		{"http issuer on localhost", "identity:\n  issuers:\n    - issuer: http://localhost:8080/\n      audiences: [a]\n    - issuer: http://127.0.0.1/\n      audiences: [a]\n"},
		{"port zero listeners may repeat", "listen:\n  grpc: 127.0.0.1:0\n  xds: 127.0.0.1:0\n  http: 127.0.0.1:0\n  dataplane: 127.0.0.1:0\n"},
		{"same port on different hosts", "listen:\n  grpc: 10.0.0.1:7000\n  xds: 10.0.0.2:7000\n"},
		{"ipv6 listener", "listen:\n  grpc: \"[::1]:9000\"\n"},
		{"null sections", "listen:\nidentity:\nconnections:\nmasking:\naudit:\n"},
		{"statement sources", "connections:\n  - {name: a, upstream: 'http://127.0.0.1:1', kind: sql-http, statement_from: body}\n  - {name: b, upstream: 'http://127.0.0.1:2', kind: sql-http, statement_from: 'query:q'}\n  - {name: c, upstream: 'http://127.0.0.1:3', kind: sql-http, statement_from: 'form:sql'}\n  - {name: d, upstream: 'http://127.0.0.1:4', kind: sql-http, statement_from: 'json:/a~1b/0'}\n"},
		{"anchors and aliases", "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    labels: &l {env: prod}\n  - name: b\n    upstream: http://127.0.0.1:2\n    labels: *l\n"},
		{"custom profile referenced", "connections:\n  - name: a\n    upstream: https://api.example.com/v1\n    masking: mine\nmasking:\n  profiles:\n    mine:\n      entities: [ssn, email]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.src)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
		})
	}
}

func TestManyErrorsReportedAtOnce(t *testing.T) {
	_, err := Load(filepath.Join("testdata", "many-errors.yaml"))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Load error %T (%v) is not Errors", err, err)
	}
	want := []Error{
		{Path: "connections[0].upstrem", Line: 10, Msg: `unknown key "upstrem" (did you mean "upstream"?)`},
		{Path: "connections[1].upstream", Line: 12, Msg: `"ftp://127.0.0.1:2121" must be an http or https URL`},
		{Path: "connections[1].forward_token", Line: 13, Msg: `expected a boolean (true or false), got string "yes"`},
		{Path: "approvals.timeout", Line: 15, Msg: `"5 minutes" is not a duration (use Go syntax such as 30s or 5m)`},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if *errs[i] != w {
			t.Errorf("error %d = %+v, want %+v", i, *errs[i], w)
		}
	}
	wantText := `connections[0].upstrem (line 10): unknown key "upstrem" (did you mean "upstream"?)
connections[1].upstream (line 12): "ftp://127.0.0.1:2121" must be an http or https URL
connections[1].forward_token (line 13): expected a boolean (true or false), got string "yes"
approvals.timeout (line 15): "5 minutes" is not a duration (use Go syntax such as 30s or 5m)`
	if got := err.Error(); got != wantText {
		t.Errorf("Error() =\n%s\nwant\n%s", got, wantText)
	}
	var first *Error
	if !errors.As(err, &first) || first.Path != "connections[0].upstrem" {
		t.Errorf("errors.As(*Error) = %v, want the first error", first)
	}
}

func TestErrorsSortedByLineThenPath(t *testing.T) {
	src := "approvals:\n  mode: x\n  timeout: 0s\nlisten: {grpc: a, xds: b}\n"
	errs := parseErrors(t, src)
	var got []string
	for _, e := range errs {
		got = append(got, e.Path)
	}
	want := []string{"approvals.mode", "approvals.timeout", "listen.grpc", "listen.xds"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paths = %v, want %v", got, want)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{Path: "listen.grpc", Line: 3, Msg: "bad"}, "listen.grpc (line 3): bad"},
		{Error{Path: "listen.grpc", Msg: "bad"}, "listen.grpc: bad"},
		{Error{Line: 7, Msg: "invalid YAML: x"}, "line 7: invalid YAML: x"},
		{Error{Msg: "empty configuration"}, "empty configuration"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestLoadValid(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	wantListen := Listen{GRPC: "127.0.0.1:9000", XDS: "127.0.0.1:18000", HTTP: "127.0.0.1:9090", Dataplane: "127.0.0.1:10000"}
	if cfg.Listen != wantListen {
		t.Errorf("Listen = %+v, want %+v", cfg.Listen, wantListen)
	}
	wantIssuers := []Issuer{
		{Issuer: "https://sts.windows.net/TENANT/", Audiences: []string{"api://custos"},
			DiscoveryURL: "https://login.microsoftonline.com/TENANT/.well-known/openid-configuration",
			Algorithms:   []string{"RS256"}, ClockSkew: 30 * time.Second, Claims: ClaimNames{Groups: "groups", Roles: "roles"},
			GroupNames: map[string]string{"11111111-1111-1111-1111-111111111111": "payments-approvers"}},
		{Issuer: "https://login.microsoftonline.com/TENANT/v2.0", Audiences: []string{"00000000-0000-0000-0000-000000000000"},
			Algorithms: DefaultAlgorithms, ClockSkew: DefaultClockSkew, Claims: ClaimNames{Groups: DefaultGroupsClaim, Roles: DefaultRolesClaim}},
	}
	if !reflect.DeepEqual(cfg.Identity.Issuers, wantIssuers) {
		t.Errorf("Issuers = %+v, want %+v", cfg.Identity.Issuers, wantIssuers)
	}
	if cfg.Policy.Bundle != "./policies" {
		t.Errorf("Policy.Bundle = %q", cfg.Policy.Bundle)
	}
	if len(cfg.Connections) != 2 {
		t.Fatalf("got %d connections, want 2", len(cfg.Connections))
	}
	c := cfg.Connections[0]
	if c.Name != "customers" || c.Upstream != "http://127.0.0.1:8081" || !reflect.DeepEqual(c.Hosts, []string{"customers.internal"}) ||
		c.Kind != KindHTTP || c.Masking != "pci" || c.PolicyMode != PolicyModeEnforce || c.ForwardToken ||
		!reflect.DeepEqual(c.Labels, map[string]string{"env": "prod"}) || c.Dialect != "" || c.StatementFrom != "" {
		t.Errorf("connections[0] = %+v", c)
	}
	if u := c.UpstreamURL(); u == nil || u.Scheme != "http" || u.Host != "127.0.0.1:8081" {
		t.Errorf("connections[0].UpstreamURL() = %v", u)
	}
	w := cfg.Connections[1]
	if w.Name != "warehouse" || w.Kind != KindSQLHTTP || w.Dialect != DialectSQLite || w.StatementFrom != "json:/query" ||
		w.PolicyMode != PolicyModeEnforce || w.Masking != "" || w.Hosts != nil || w.Labels != nil {
		t.Errorf("connections[1] = %+v", w)
	}
	if a := cfg.Approvals; a.Mode != ApprovalModeHold || a.Timeout != 5*time.Minute || a.Expiry != DefaultApprovalExpiry || a.Store != "" || a.Webhooks != nil {
		t.Errorf("Approvals = %+v", cfg.Approvals)
	}
	wantMasking := Masking{Profiles: map[string]Profile{"cards-only": {Entities: []string{"card"}}}}
	if !reflect.DeepEqual(cfg.Masking, wantMasking) {
		t.Errorf("Masking = %+v, want %+v", cfg.Masking, wantMasking)
	}
	if cfg.Audit.Dir != "./data/audit" {
		t.Errorf("Audit.Dir = %q", cfg.Audit.Dir)
	}
	if cfg.Dev == nil || *cfg.Dev != (Dev{Issuer: true, DemoUpstream: "127.0.0.1:8081"}) {
		t.Errorf("Dev = %+v", cfg.Dev)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(base + "connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n  - name: b\n    upstream: http://127.0.0.1:2\n    kind: sql-http\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if cfg.Listen != (Listen{GRPC: DefaultGRPCAddr, XDS: DefaultXDSAddr, HTTP: DefaultHTTPAddr, Dataplane: DefaultDataplaneAddr}) {
		t.Errorf("Listen = %+v", cfg.Listen)
	}
	if cfg.Listen.GRPC != "127.0.0.1:9000" || cfg.Listen.XDS != "127.0.0.1:18000" || cfg.Listen.HTTP != "127.0.0.1:9090" || cfg.Listen.Dataplane != "127.0.0.1:10000" {
		t.Errorf("default listen addresses changed: %+v", cfg.Listen)
	}
	if cfg.Policy.Bundle != "" {
		t.Errorf("Policy.Bundle = %q, want empty", cfg.Policy.Bundle)
	}
	a, b := cfg.Connections[0], cfg.Connections[1]
	if a.Kind != "http" || a.PolicyMode != "enforce" || a.Dialect != "" || a.ForwardToken {
		t.Errorf("connections[0] defaults = %+v", a)
	}
	if b.Kind != "sql-http" || b.Dialect != "postgres" {
		t.Errorf("connections[1] defaults = %+v", b)
	}
	if cfg.Approvals.Mode != "hold" || cfg.Approvals.Timeout != 2*time.Minute || cfg.Approvals.Expiry != 24*time.Hour {
		t.Errorf("Approvals = %+v", cfg.Approvals)
	}
	if cfg.Audit.Dir != "./data/audit" {
		t.Errorf("Audit.Dir = %q", cfg.Audit.Dir)
	}
	if cfg.Dev != nil {
		t.Errorf("Dev = %+v, want nil without a dev block", cfg.Dev)
	}
	if !reflect.DeepEqual(Default().Listen, cfg.Listen) {
		t.Errorf("Default().Listen = %+v", Default().Listen)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load succeeded on a missing file")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not wrap fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	var errs Errors
	if errors.As(err, &errs) {
		t.Errorf("a read error should not be Errors")
	}
}

func TestLookups(t *testing.T) {
	cfg, err := Parse([]byte("connections:\n  - name: a\n    upstream: http://127.0.0.1:1\n    hosts: [A.Internal, \"b.internal:8443\"]\n  - name: c\n    upstream: http://127.0.0.1:2\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := cfg.Connections[0].Hosts; !reflect.DeepEqual(got, []string{"a.internal", "b.internal:8443"}) {
		t.Errorf("hosts not lower-cased: %v", got)
	}
	if c, ok := cfg.Connection("c"); !ok || c.Name != "c" {
		t.Errorf("Connection(c) = %+v, %v", c, ok)
	}
	if _, ok := cfg.Connection("zzz"); ok {
		t.Error("Connection(zzz) found")
	}
	for _, h := range []string{"a.internal", "A.INTERNAL", "a.internal:443", "b.internal", "B.Internal:8443", "b.internal:1"} {
		if c, ok := cfg.ConnectionForHost(h); !ok || c.Name != "a" {
			t.Errorf("ConnectionForHost(%q) = %q, %v; want a", h, c.Name, ok)
		}
	}
	for _, h := range []string{"", "c", "x.internal", "127.0.0.1:1"} {
		if c, ok := cfg.ConnectionForHost(h); ok {
			t.Errorf("ConnectionForHost(%q) = %q, want none", h, c.Name)
		}
	}
}

func TestUpstreamURLIsACopy(t *testing.T) {
	cfg, err := Parse([]byte("connections:\n  - name: a\n    upstream: https://api.example.com/base\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	c := cfg.Connections[0]
	c.UpstreamURL().Path = "/changed"
	if got := c.UpstreamURL().String(); got != "https://api.example.com/base" {
		t.Errorf("UpstreamURL() = %s after mutating a copy", got)
	}
	if (Connection{}).UpstreamURL() != nil {
		t.Error("zero Connection has an UpstreamURL")
	}
}

func TestCatalogs(t *testing.T) {
	for _, n := range []string{"pci", "secrets", "pii", "all"} {
		if !BuiltinProfile(n) {
			t.Errorf("BuiltinProfile(%q) = false", n)
		}
	}
	if BuiltinProfile("cards-only") {
		t.Error(`BuiltinProfile("cards-only") = true`)
	}
	want := []string{"aba", "account", "azure_key", "bearer", "card", "email", "iban", "phone", "private_key", "sas", "ssn"}
	if !reflect.DeepEqual(Entities, want) {
		t.Errorf("Entities = %v, want %v", Entities, want)
	}
}
