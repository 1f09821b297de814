package inspect

import (
	"context"
	"net/url"
	"strings"

	"github.com/custos-dev/custos/filters/request"
)

// Azure classifies requests to Azure Resource Manager (paths under
// /subscriptions or /providers, case-insensitive as ARM is) and to Azure
// Storage's Blob, Table and Queue REST APIs (the service is the upstream's
// host: ACCOUNT.blob.core.windows.net and so on). A SAS signature (sig) in
// the query is never copied into the action.
type Azure struct{}

// azureAction is the azure block of the policy input.
type azureAction struct {
	service, operation, resourceID, provider, action string
}

func (a azureAction) details() map[string]any {
	return map[string]any{"service": a.service, "operation": a.operation, "resource_id": a.resourceID,
		"provider": a.provider, "action": a.action}
}

// Inspect returns r's azure action.
func (Azure) Inspect(_ context.Context, r *request.Request) (Action, error) {
	segs, err := pathSegments(relPath(r))
	if err != nil {
		return unknown(KindAzure, r, err.Error()), nil
	}
	q, err := url.ParseQuery(r.RawQuery)
	if err != nil {
		return unknown(KindAzure, r, "query does not parse"), nil
	}
	var (
		a    azureAction
		risk Risk
		why  string
	)
	service := storageService(upstreamHost(r))
	if cr := r.Connection.Credentials; service == "" && cr != nil && cr.AzureSharedKey != nil {
		// An emulator (Azurite) or a custom domain: the connection's
		// credential says which service it signs for.
		switch s := cr.AzureSharedKey.Service; s {
		case "blob", "table", "queue":
			service = s
		}
	}
	switch {
	case len(segs) > 0 && (strings.EqualFold(segs[0], "subscriptions") || strings.EqualFold(segs[0], "providers") ||
		strings.EqualFold(segs[0], "batch")) || service == "" && len(segs) > 0 && strings.EqualFold(segs[0], "tenants"):
		a, risk, why = armAction(r.Method, segs)
	case service == "blob":
		a, risk, why = blobAction(r, segs, q)
	case service == "table":
		a, risk, why = tableAction(r, segs, q)
	case service == "queue":
		a, risk, why = queueAction(r, segs, q)
	default:
		why = "neither an Azure Resource Manager path nor a Blob, Table or Queue endpoint"
	}
	if why != "" {
		return unknown(KindAzure, r, why), nil
	}
	sum := "azure " + a.service + " " + a.operation
	if a.resourceID != "" {
		sum += " " + a.resourceID
	}
	sum += " on " + r.Connection.Name
	if q.Has("sig") {
		sum += " (with a SAS)"
	}
	return Action{Kind: KindAzure, Risk: risk, Summary: oneLine(sum), Details: a.details()}, nil
}

// storageService is blob, table or queue for a storage account host, "" else.
func storageService(host string) string {
	for _, s := range []string{"blob", "table", "queue"} {
		if strings.Contains(host, "."+s+".core.") || strings.Contains(host, "."+s+".storage.") {
			return s
		}
	}
	return ""
}

// armReadActions are POST actions that only read: everything else an agent
// POSTs to ARM (listKeys, regenerateKey, runCommand, restart,
// listClusterAdminCredential, …) is admin.
var armReadActions = map[string]bool{
	"checknameavailability": true,
	"whatif":                true,
	"validate":              true,
	"query":                 true,
	"listavailablesizes":    true,
	"getavailableversions":  true,
}

// armAdminProviders govern access itself: any write is admin.
var armAdminProviders = map[string]bool{
	"microsoft.authorization":   true,
	"microsoft.managedidentity": true,
}

// armAction parses an ARM resource path: scopes (subscriptions,
// resourceGroups), then providers/NAMESPACE/TYPE/NAME[/TYPE/NAME]…, maybe
// ending in an action, and possibly nested (extension resources).
func armAction(method string, segs []string) (azureAction, Risk, string) {
	a := azureAction{service: "arm"}
	if len(segs) == 1 && strings.EqualFold(segs[0], "batch") {
		return a, "", "an ARM batch request carries other requests in its body"
	}
	types := []string{}
	action := ""
	i := 0
	for i < len(segs) {
		s := strings.ToLower(segs[i])
		switch {
		case s == "subscriptions" || s == "resourcegroups" || s == "tenants" || s == "managementgroups":
			if a.provider != "Microsoft.Resources" {
				types = nil
			}
			types = append(types, s)
			i += 2
			a.provider = "Microsoft.Resources"
		case s == "providers":
			if i+1 >= len(segs) {
				types, i = []string{"providers"}, i+1
				continue
			}
			a.provider = segs[i+1]
			types = nil
			i += 2
			for i < len(segs) && !strings.EqualFold(segs[i], "providers") {
				if i+1 < len(segs) && !strings.EqualFold(segs[i+1], "providers") {
					types = append(types, segs[i])
					i += 2
					continue
				}
				// an odd part: a collection (GET, PUT with a body name) or
				// an action (POST)
				if method == "POST" {
					action = segs[i]
				} else {
					types = append(types, segs[i], "")
				}
				i++
			}
		default:
			if method == "POST" && i == len(segs)-1 {
				action = segs[i]
				i++
				continue
			}
			types = append(types, s)
			i++
		}
	}
	resEnd := len(segs)
	if action != "" {
		resEnd--
	}
	a.resourceID = "/" + strings.Join(segs[:resEnd], "/")
	typ := strings.Join(filterEmpty(types), "/")
	prov := strings.ToLower(a.provider)
	var risk Risk
	switch method {
	case "GET", "HEAD":
		a.action, risk = "read", RiskRead
	case "PUT", "PATCH":
		a.action, risk = "write", RiskWrite
		if armAdminProviders[prov] {
			risk = RiskAdmin
		}
	case "DELETE":
		a.action, risk = "delete", RiskDestructive
		if armAdminProviders[prov] {
			risk = RiskAdmin
		}
	case "POST":
		if prov == "microsoft.resourcegraph" && typ == "" && strings.EqualFold(action, "resources") {
			// Resource Graph queries are POSTs to the resources collection.
			typ, action = action, "query"
			a.resourceID = "/" + strings.Join(segs, "/")
		}
		if action == "" {
			return a, "", "POST to an ARM path with no action"
		}
		a.action = action
		risk = RiskAdmin
		if armReadActions[strings.ToLower(action)] {
			risk = RiskRead
		}
	default:
		return a, "", "method " + quoteShort(method) + " is not an ARM operation"
	}
	op := a.provider
	if typ != "" {
		op += "/" + typ
	}
	if method == "POST" {
		op += "/" + action + "/action"
	} else {
		op += "/" + a.action
	}
	a.operation = op
	return a, risk, ""
}

func filterEmpty(ss []string) []string {
	out := ss[:0:0]
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// storageRisk is the risk of a storage operation by method, for operations
// with no rule of their own.
func storageRisk(method string) (Risk, string) {
	switch method {
	case "GET", "HEAD", "OPTIONS":
		return RiskRead, "read"
	case "PUT", "POST", "PATCH", "MERGE":
		return RiskWrite, "write"
	case "DELETE":
		return RiskDestructive, "delete"
	}
	return "", ""
}

// blobAction names a Blob service operation from method, path and the comp
// and restype parameters.
func blobAction(r *request.Request, segs []string, q url.Values) (azureAction, Risk, string) {
	a := azureAction{service: "blob", provider: "Microsoft.Storage", resourceID: "/" + strings.Join(segs, "/")}
	risk, act := storageRisk(r.Method)
	if act == "" {
		return a, "", "method " + quoteShort(r.Method) + " is not a Blob operation"
	}
	a.action = act
	comp, restype := strings.ToLower(q.Get("comp")), strings.ToLower(q.Get("restype"))
	if len(q["comp"]) > 1 || len(q["restype"]) > 1 {
		return a, "", "comp or restype given twice"
	}
	m := r.Method
	switch {
	case comp == "batch":
		return a, "", "a blob batch carries other requests in its body"
	case len(segs) == 0 || restype == "service" || restype == "account":
		switch {
		case comp == "list":
			a.operation = "ListContainers"
		case comp == "userdelegationkey":
			a.operation, risk = "GetUserDelegationKey", RiskAdmin
		case comp == "properties" && m == "PUT":
			a.operation, risk = "SetBlobServiceProperties", RiskAdmin
		case comp == "properties":
			a.operation = "GetBlobServiceProperties"
		case comp == "stats":
			a.operation = "GetBlobServiceStats"
		case comp == "blobs":
			a.operation = "FindBlobsByTags"
		default:
			a.operation = "Account" + titleMethod(m)
		}
	case len(segs) == 1 || restype == "container":
		switch {
		case comp == "acl" && m == "PUT":
			a.operation, risk = "SetContainerACL", RiskAdmin
		case comp == "acl":
			a.operation = "GetContainerACL"
		case comp == "list":
			a.operation = "ListBlobs"
		case comp == "metadata":
			a.operation = "ContainerMetadata" + titleMethod(m)
		case comp == "lease":
			a.operation = "LeaseContainer"
		case comp == "undelete" || comp == "rename":
			a.operation = "Container" + titleMethod(m) + "(" + comp + ")"
		case m == "PUT":
			a.operation = "CreateContainer"
		case m == "DELETE":
			a.operation = "DeleteContainer"
		default:
			a.operation = "GetContainerProperties"
		}
	default:
		switch {
		case m == "DELETE":
			a.operation = "DeleteBlob"
		case m == "PUT" && comp == "":
			a.operation = "PutBlob"
			if r.Headers["x-ms-copy-source"] != "" {
				a.operation = "CopyBlob"
			}
		case comp == "immutabilitypolicies" || comp == "legalhold":
			a.operation, risk = "Blob"+titleMethod(m)+"("+comp+")", Higher(risk, RiskAdmin)
		case comp != "":
			a.operation = "Blob" + titleMethod(m) + "(" + comp + ")"
		case m == "HEAD":
			a.operation = "GetBlobProperties"
		default:
			a.operation = "GetBlob"
		}
	}
	return a, risk, ""
}

// tableAction names a Table service operation. Table names are
// case-insensitive; an entity is addressed as TABLE(PartitionKey='…',RowKey='…').
func tableAction(r *request.Request, segs []string, q url.Values) (azureAction, Risk, string) {
	a := azureAction{service: "table", provider: "Microsoft.Storage", resourceID: "/" + strings.Join(segs, "/")}
	risk, act := storageRisk(r.Method)
	if act == "" {
		return a, "", "method " + quoteShort(r.Method) + " is not a Table operation"
	}
	a.action = act
	m := r.Method
	comp := strings.ToLower(q.Get("comp"))
	if len(segs) > 1 {
		return a, "", "a Table path has one part"
	}
	first := ""
	if len(segs) == 1 {
		first = segs[0]
	}
	lower := strings.ToLower(first)
	switch {
	case lower == "$batch":
		return a, "", "a table batch carries other requests in its body"
	case first == "" || strings.EqualFold(q.Get("restype"), "service"):
		if comp == "properties" && m == "PUT" {
			a.operation, risk = "SetTableServiceProperties", RiskAdmin
		} else {
			a.operation = "TableService" + titleMethod(m)
		}
	case comp == "acl":
		a.operation = "TableACL" + titleMethod(m)
		if m == "PUT" {
			risk = RiskAdmin
		}
	case lower == "tables" || lower == "tables()":
		if m == "POST" {
			a.operation = "CreateTable"
		} else {
			a.operation = "QueryTables"
		}
	case strings.HasPrefix(lower, "tables("):
		if m == "DELETE" {
			a.operation = "DeleteTable"
		} else {
			a.operation = "QueryTables"
		}
	default:
		name, key, _ := strings.Cut(first, "(")
		entity := strings.Trim(key, ")") != ""
		switch {
		case m == "POST" && !entity:
			a.operation = "InsertEntity"
		case m == "PUT":
			a.operation = "UpdateEntity"
		case m == "MERGE" || m == "PATCH":
			a.operation = "MergeEntity"
		case m == "DELETE" && entity:
			a.operation = "DeleteEntity"
		case m == "DELETE":
			return a, "", "DELETE on a table path without an entity key"
		default:
			a.operation = "QueryEntities"
		}
		if name == "" {
			return a, "", "no table name"
		}
	}
	return a, risk, ""
}

// queueAction names a Queue service operation.
func queueAction(r *request.Request, segs []string, q url.Values) (azureAction, Risk, string) {
	a := azureAction{service: "queue", provider: "Microsoft.Storage", resourceID: "/" + strings.Join(segs, "/")}
	risk, act := storageRisk(r.Method)
	if act == "" {
		return a, "", "method " + quoteShort(r.Method) + " is not a Queue operation"
	}
	a.action = act
	m := r.Method
	comp := strings.ToLower(q.Get("comp"))
	switch {
	case len(segs) == 0:
		switch {
		case comp == "properties" && m == "PUT":
			a.operation, risk = "SetQueueServiceProperties", RiskAdmin
		case comp == "list":
			a.operation = "ListQueues"
		default:
			a.operation = "QueueService" + titleMethod(m)
		}
	case len(segs) == 1:
		switch {
		case comp == "acl" && m == "PUT":
			a.operation, risk = "SetQueueACL", RiskAdmin
		case comp != "":
			a.operation = "Queue" + titleMethod(m) + "(" + comp + ")"
		case m == "PUT":
			a.operation = "CreateQueue"
		case m == "DELETE":
			a.operation = "DeleteQueue"
		default:
			a.operation = "GetQueueMetadata"
		}
	case len(segs) == 2 && strings.EqualFold(segs[1], "messages"):
		switch {
		case m == "GET" && strings.EqualFold(q.Get("peekonly"), "true"):
			a.operation = "PeekMessages"
		case m == "GET":
			// Dequeuing hides messages from other readers.
			a.operation, a.action, risk = "GetMessages", "write", RiskWrite
		case m == "POST":
			a.operation = "PutMessage"
		case m == "DELETE":
			a.operation = "ClearMessages"
		default:
			a.operation = "Messages" + titleMethod(m)
		}
	case len(segs) == 3 && strings.EqualFold(segs[1], "messages"):
		switch m {
		case "DELETE":
			// Deleting one received message is how a consumer finishes it.
			a.operation, risk = "DeleteMessage", RiskWrite
		case "PUT":
			a.operation = "UpdateMessage"
		default:
			return a, "", "method " + m + " on a queue message"
		}
	default:
		return a, "", "not a Queue path"
	}
	return a, risk, ""
}

func titleMethod(m string) string {
	if m == "" {
		return ""
	}
	return m[:1] + strings.ToLower(m[1:])
}
