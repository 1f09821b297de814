package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/custos-dev/custos/filters/request"
)

// Kubernetes classifies requests to a Kubernetes API server by the API's own
// path grammar (core /api/v1 and named groups /apis/GROUP/VERSION, namespaced
// and cluster-scoped, subresources) and the verb the API server derives from
// the method and path. Reads of secrets, exec/attach/portforward/proxy,
// impersonation, service-account tokens, ephemeral containers, RBAC and
// admission changes, and pods (or pod templates) that mount secrets, use host
// namespaces or paths, or run privileged are admin.
type Kubernetes struct{}

// kubeAction is the kubernetes block of the policy input.
type kubeAction struct {
	verb, group, version, resource, namespace, name, subresource string
	command                                                      []string
	impersonate                                                  string
}

func (k kubeAction) details() map[string]any {
	cmd := k.command
	if cmd == nil {
		cmd = []string{}
	}
	return map[string]any{
		"verb": k.verb, "group": k.group, "resource": k.resource, "namespace": k.namespace,
		"name": k.name, "subresource": k.subresource, "command": cmd, "impersonate": k.impersonate,
	}
}

// Inspect returns r's kubernetes action.
func (Kubernetes) Inspect(_ context.Context, r *request.Request) (Action, error) {
	ka, why := parseKubePath(r.Method, relPath(r), r.Query())
	if why != "" {
		return unknown(KindKubernetes, r, why), nil
	}
	risk, notes := kubeRisk(&ka, r)
	ka.impersonate = impersonation(r.Headers)
	if ka.impersonate != "" {
		risk = Higher(risk, RiskAdmin)
		notes = append(notes, "impersonating "+ka.impersonate)
	}
	return Action{Kind: KindKubernetes, Risk: risk, Summary: kubeSummary(&ka, r, notes), Details: ka.details()}, nil
}

// kubeName is a DNS label as resources (built-in and CRD plurals), groups'
// parts and versions are spelled; anything else (upper case, look-alike
// letters, trailing dots) is not a resource the API server serves.
func kubeName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// kubeGroup is an API group: DNS labels joined by dots.
func kubeGroup(s string) bool {
	for _, l := range strings.Split(s, ".") {
		if !kubeName(l) {
			return false
		}
	}
	return true
}

// parseKubePath reads method and path as the API server's request-info
// resolver does. why is non-empty when the path is not one it understands.
func parseKubePath(method, p string, q map[string][]string) (kubeAction, string) {
	segs, err := pathSegments(p)
	if err != nil {
		return kubeAction{}, err.Error()
	}
	var ka kubeAction
	switch {
	case len(segs) == 0:
		return readOnlyNonResource(method, "/")
	case segs[0] == "api" && len(segs) >= 2:
		ka.version, segs = segs[1], segs[2:]
	case segs[0] == "apis" && len(segs) >= 3:
		ka.group, ka.version, segs = segs[1], segs[2], segs[3:]
		if !kubeGroup(ka.group) {
			return ka, "API group " + quoteShort(ka.group) + " is not a group name"
		}
	case segs[0] == "api" || segs[0] == "apis" || segs[0] == "version" || segs[0] == "healthz" ||
		segs[0] == "livez" || segs[0] == "readyz" || segs[0] == "openapi" || segs[0] == ".well-known":
		return readOnlyNonResource(method, "/"+strings.Join(segs, "/"))
	default:
		return ka, "not a Kubernetes API path"
	}
	if !kubeName(ka.version) {
		return ka, "API version " + quoteShort(ka.version) + " is not a version"
	}
	if len(segs) == 0 {
		return readOnlyNonResource(method, "discovery")
	}
	watch := false
	if segs[0] == "watch" { // the deprecated /watch/ prefix
		watch, segs = true, segs[1:]
	}
	if len(segs) >= 2 && segs[0] == "namespaces" {
		ka.namespace = segs[1]
		if len(segs) == 2 || (len(segs) == 3 && (segs[2] == "status" || segs[2] == "finalize")) {
			// the namespace object itself
			ka.resource, ka.name = "namespaces", segs[1]
			if len(segs) == 3 {
				ka.subresource = segs[2]
			}
			segs = nil
		} else {
			segs = segs[2:]
		}
	}
	if len(segs) > 0 {
		ka.resource = segs[0]
		if len(segs) > 1 {
			ka.name = segs[1]
		}
		if len(segs) > 2 {
			ka.subresource = segs[2]
		}
		// Only proxy takes a path after the subresource.
		if len(segs) > 3 && ka.subresource != "proxy" {
			return ka, "path has parts after the subresource"
		}
	}
	if !kubeName(ka.resource) {
		return ka, "resource " + quoteShort(ka.resource) + " is not a resource name"
	}
	if ka.subresource != "" && !kubeName(ka.subresource) {
		return ka, "subresource " + quoteShort(ka.subresource) + " is not a subresource name"
	}
	if ka.namespace != "" && !kubeName(ka.namespace) {
		return ka, "namespace " + quoteShort(ka.namespace) + " is not a namespace name"
	}
	watchParam := false
	if v := q["watch"]; len(v) > 0 {
		watchParam = v[len(v)-1] == "true" || v[len(v)-1] == "1"
	}
	switch method {
	case "GET", "HEAD":
		switch {
		case watch || watchParam:
			ka.verb = "watch"
		case ka.name == "":
			ka.verb = "list"
		default:
			ka.verb = "get"
		}
	case "POST":
		ka.verb = "create"
	case "PUT":
		ka.verb = "update"
	case "PATCH":
		ka.verb = "patch"
	case "DELETE":
		if ka.name == "" {
			ka.verb = "deletecollection"
		} else {
			ka.verb = "delete"
		}
	case "OPTIONS":
		ka.verb = "options"
	default:
		return ka, "method " + quoteShort(method) + " is not a Kubernetes verb"
	}
	if watch && ka.verb != "watch" {
		return ka, "the /watch/ prefix with a method other than GET"
	}
	switch ka.subresource {
	case "exec", "attach":
		ka.command = q["command"]
	}
	return ka, ""
}

// readOnlyNonResource classifies discovery and health paths: readable with
// GET, not understood otherwise.
func readOnlyNonResource(method, what string) (kubeAction, string) {
	if method == "GET" || method == "HEAD" {
		return kubeAction{verb: "get", name: what}, ""
	}
	return kubeAction{}, "method " + method + " on a non-resource path"
}

// kubeAdminSubresources reach into a node or a container, or mint
// credentials.
var kubeAdminSubresources = map[string]bool{
	"exec": true, "attach": true, "portforward": true, "proxy": true,
	"ephemeralcontainers": true, "token": true, "approval": true,
}

// kubeAdminGroups hold who may do what, and what runs on every request.
var kubeAdminGroups = map[string]bool{
	"rbac.authorization.k8s.io":    true,
	"admissionregistration.k8s.io": true,
	"apiextensions.k8s.io":         true,
	"certificates.k8s.io":          true,
	"apiregistration.k8s.io":       true,
	"flowcontrol.apiserver.k8s.io": true,
}

// kubePodBearing are the resources whose body is (or holds) a pod spec.
var kubePodBearing = map[string]bool{
	"pods": true, "podtemplates": true, "replicationcontrollers": true, "deployments": true,
	"replicasets": true, "statefulsets": true, "daemonsets": true, "jobs": true, "cronjobs": true,
}

// kubeRisk classifies ka and says why, in approver's words.
func kubeRisk(ka *kubeAction, r *request.Request) (Risk, []string) {
	var notes []string
	risk := RiskRead
	switch ka.verb {
	case "get", "list", "watch", "options":
	case "create", "update", "patch":
		risk = RiskWrite
	case "delete", "deletecollection":
		risk = RiskDestructive
	}
	if ka.resource == "" {
		return risk, notes
	}
	switch {
	case kubeAdminSubresources[ka.subresource] && (ka.subresource != "token" || ka.resource == "serviceaccounts"):
		risk = RiskAdmin
		notes = append(notes, ka.subresource+" into "+ka.resource)
	case ka.resource == "secrets" && ka.group == "":
		if risk == RiskRead {
			notes = append(notes, "reads secrets")
		}
		risk = RiskAdmin
	case kubeAdminGroups[ka.group] && risk != RiskRead:
		risk = RiskAdmin
		notes = append(notes, "changes "+ka.group)
	case ka.resource == "nodes" && risk != RiskRead:
		risk = RiskAdmin
		notes = append(notes, "changes nodes")
	case ka.resource == "pods" && ka.subresource == "eviction":
		risk = Higher(risk, RiskDestructive)
	}
	if kubePodBearing[ka.resource] && (ka.verb == "create" || ka.verb == "update" || ka.verb == "patch") && ka.subresource == "" {
		found, err := podSpecDanger(r)
		switch {
		case err != nil:
			risk = Higher(risk, RiskUnknown)
			notes = append(notes, "body not understood: "+err.Error())
		case len(found) > 0:
			risk = RiskAdmin
			notes = append(notes, "pod "+strings.Join(found, ", "))
		}
	}
	return risk, notes
}

// podDangerKeys are pod-spec fields that give a container the node, the
// node's namespaces or credentials. Keys are matched without regard to case
// (older API servers decoded with encoding/json, which folds case).
var podDangerKeys = map[string]string{
	"privileged":               "runs privileged",
	"allowprivilegeescalation": "allows privilege escalation",
	"hostpath":                 "mounts a host path",
	"hostnetwork":              "uses the host network",
	"hostpid":                  "uses the host PID namespace",
	"hostipc":                  "uses the host IPC namespace",
	"secret":                   "mounts a secret",
	"secretkeyref":             "reads a secret into its environment",
	"secretref":                "reads a secret into its environment",
	"ephemeralcontainers":      "adds ephemeral containers",
	"add":                      "adds capabilities",
	"procmount":                "unmasks /proc",
}

// podSpecDanger scans a pod-bearing body (JSON, YAML, JSON patch, merge
// patch, apply patch) for podDangerKeys anywhere, every occurrence of every
// key, so duplicates or odd nesting do not hide one.
func podSpecDanger(r *request.Request) ([]string, error) {
	body, err := fullBody(r)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	ct := strings.ToLower(r.Headers["content-type"])
	found := map[string]bool{}
	switch {
	case strings.Contains(ct, "json") || ct == "":
		if err := scanJSON(body, found); err != nil {
			return nil, err
		}
	case strings.Contains(ct, "yaml"):
		var v any
		d := yaml.NewDecoder(bytes.NewReader(body))
		for {
			if err := d.Decode(&v); err == io.EOF {
				break
			} else if err != nil {
				return nil, errors.New("YAML body does not parse")
			}
			scanValue(v, found, 0)
		}
	default:
		return nil, errors.New("content type " + quoteShort(ct) + " is not inspected")
	}
	out := make([]string, 0, len(found))
	for k := range found {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// scanJSON walks every token of a JSON document (duplicates included).
func scanJSON(b []byte, found map[string]bool) error {
	d := json.NewDecoder(bytes.NewReader(b))
	var stack []bool // true for objects
	expectKey := false
	key := ""
	values := 0
	for {
		if len(stack) == 0 && values == 1 {
			if _, err := d.Token(); err != io.EOF {
				return errors.New("JSON body has more than one document")
			}
			return nil
		}
		t, err := d.Token()
		if err == io.EOF {
			if len(stack) != 0 {
				return errors.New("JSON body ends early")
			}
			return nil
		}
		if err != nil {
			return errors.New("JSON body does not parse")
		}
		inObj := len(stack) > 0 && stack[len(stack)-1]
		if inObj && expectKey {
			if dl, ok := t.(json.Delim); ok && dl == '}' {
				stack = stack[:len(stack)-1]
				expectKey = len(stack) > 0 && stack[len(stack)-1]
				if len(stack) == 0 {
					values++
				}
				continue
			}
			key, _ = t.(string)
			expectKey = false
			continue
		}
		// a value (or the end of an array)
		switch t := t.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) > maxJSONDepth {
					return errors.New("JSON body nested too deep")
				}
				noteKey(key, true, found)
				stack = append(stack, t == '{')
				expectKey = t == '{'
				key = ""
				continue
			case ']':
				stack = stack[:len(stack)-1]
			}
		}
		if len(stack) == 0 {
			values++
		}
		switch t := t.(type) {
		case bool:
			noteKey(key, t, found)
		case string:
			noteKey(key, t != "" && t != "Default", found)
			if strings.EqualFold(key, "path") {
				notePatchPath(t, found)
			}
		case json.Number, float64:
			noteKey(key, false, found)
		}
		key = ""
		expectKey = len(stack) > 0 && stack[len(stack)-1]
	}
}

// noteKey records key when it is a danger key with a value that turns the
// danger on (true, an object, a non-default string).
func noteKey(key string, on bool, found map[string]bool) {
	if key == "" || !on {
		return
	}
	if what, ok := podDangerKeys[strings.ToLower(key)]; ok {
		found[what] = true
	}
}

// notePatchPath reads a JSON patch path ("/spec/volumes/0/hostPath") for
// danger keys.
func notePatchPath(p string, found map[string]bool) {
	for _, seg := range strings.Split(p, "/") {
		if what, ok := podDangerKeys[strings.ToLower(seg)]; ok {
			found[what] = true
		}
	}
}

func scanValue(v any, found map[string]bool, depth int) {
	if depth > maxJSONDepth {
		found["nested too deep to read"] = true
		return
	}
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			switch c := c.(type) {
			case bool:
				noteKey(k, c, found)
			case string:
				noteKey(k, c != "" && c != "Default", found)
				if strings.EqualFold(k, "path") {
					notePatchPath(c, found)
				}
			case map[string]any, []any:
				noteKey(k, true, found)
			}
			scanValue(c, found, depth+1)
		}
	case []any:
		for _, c := range v {
			scanValue(c, found, depth+1)
		}
	}
}

// impersonation describes the impersonation headers of h, "" when none.
func impersonation(h map[string]string) string {
	var parts []string
	if u, ok := h["impersonate-user"]; ok {
		parts = append(parts, "user "+u)
	}
	if g, ok := h["impersonate-group"]; ok {
		parts = append(parts, "group "+g)
	}
	if u, ok := h["impersonate-uid"]; ok {
		parts = append(parts, "uid "+u)
	}
	var extra []string
	for k := range h {
		if strings.HasPrefix(k, "impersonate-extra-") {
			extra = append(extra, k[len("impersonate-extra-"):])
		}
	}
	sort.Strings(extra)
	for _, e := range extra {
		parts = append(parts, "extra "+e)
	}
	return strings.Join(parts, ", ")
}

func kubeSummary(ka *kubeAction, r *request.Request, notes []string) string {
	var b strings.Builder
	b.WriteString("kubernetes ")
	b.WriteString(ka.verb)
	if ka.resource != "" {
		b.WriteByte(' ')
		if ka.group != "" {
			b.WriteString(ka.resource + "." + ka.group)
		} else {
			b.WriteString(ka.resource)
		}
		if ka.subresource != "" {
			b.WriteString("/" + ka.subresource)
		}
		if ka.name != "" {
			b.WriteString(" " + ka.name)
		}
		if ka.namespace != "" {
			b.WriteString(" in namespace " + ka.namespace)
		}
	} else if ka.name != "" {
		b.WriteString(" " + ka.name)
	}
	b.WriteString(" on " + r.Connection.Name)
	if len(ka.command) > 0 {
		b.WriteString(": " + strings.Join(ka.command, " "))
	}
	if len(notes) > 0 {
		b.WriteString(" [" + strings.Join(notes, "; ") + "]")
	}
	return oneLine(b.String())
}

// quoteShort quotes s cut to 64 bytes, for reasons in summaries.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
