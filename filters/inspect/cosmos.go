package inspect

import (
	"context"
	"strings"

	"github.com/custos-dev/custos/filters/request"
)

// Cosmos classifies Azure Cosmos DB REST requests: the resource path
// (/dbs/DB/colls/COLL/docs/ID and the other resource types), the method, and
// the headers that change what a POST means (x-ms-documentdb-isquery,
// x-ms-documentdb-is-upsert, x-ms-cosmos-is-batch-request). A query's text
// comes from the body. Stored procedures run as write; creating or replacing
// server-side code (stored procedures, triggers, UDFs), users, permissions
// and offers is admin.
type Cosmos struct{}

// cosmosTypes are the resource types of a Cosmos DB path, by the name of
// the operation on them.
var cosmosTypes = map[string]string{
	"dbs": "Database", "colls": "Container", "docs": "Document", "sprocs": "StoredProcedure",
	"triggers": "Trigger", "udfs": "UserDefinedFunction", "users": "User", "permissions": "Permission",
	"attachments": "Attachment", "pkranges": "PartitionKeyRange", "offers": "Offer", "conflicts": "Conflict",
	"clientencryptionkeys": "ClientEncryptionKey",
}

// Inspect returns r's cosmos action.
func (Cosmos) Inspect(_ context.Context, r *request.Request) (Action, error) {
	segs, err := pathSegments(relPath(r))
	if err != nil {
		return unknown(KindCosmos, r, err.Error()), nil
	}
	var db, coll, typ, id string
	for i := 0; i < len(segs); i += 2 {
		t := strings.ToLower(segs[i])
		if _, ok := cosmosTypes[t]; !ok {
			return unknown(KindCosmos, r, "resource type "+quoteShort(segs[i])+" is not a Cosmos DB resource"), nil
		}
		typ, id = t, ""
		if i+1 < len(segs) {
			id = segs[i+1]
		}
		switch t {
		case "dbs":
			if i != 0 {
				return unknown(KindCosmos, r, "dbs below the root"), nil
			}
			db = id
		case "colls":
			coll = id
		}
	}
	h := r.Headers
	isQuery := strings.EqualFold(h["x-ms-documentdb-isquery"], "true") || strings.HasPrefix(strings.ToLower(h["content-type"]), "application/query+json")
	noun := "Account"
	if typ != "" {
		noun = cosmosTypes[typ]
	}
	var op string
	risk := RiskRead
	query := ""
	switch m := r.Method; {
	case len(segs) == 0 && m == "GET":
		op = "ReadAccount"
	case m == "GET" || m == "HEAD":
		if id == "" {
			op = "List" + noun + "s"
		} else {
			op = "Read" + noun
		}
	case m == "POST" && isQuery && id == "":
		op = "Query" + noun + "s"
		v, err := bodyJSON(r)
		if err != nil {
			return unknown(KindCosmos, r, err.Error()), nil
		}
		q, ok := jsonPointer(v, "/query")
		if s, isStr := q.(string); ok && isStr {
			query = s
		} else {
			return unknown(KindCosmos, r, "query body has no query text"), nil
		}
	case m == "POST" && typ == "sprocs" && id != "":
		op, risk = "ExecuteStoredProcedure", RiskWrite
	case m == "POST" && typ == "docs" && id == "" && strings.EqualFold(h["x-ms-cosmos-is-batch-request"], "true"):
		op, risk = "BatchDocuments", RiskWrite
		v, err := bodyJSON(r)
		if err != nil {
			return unknown(KindCosmos, r, err.Error()), nil
		}
		ops, ok := v.([]any)
		if !ok {
			return unknown(KindCosmos, r, "batch body is not a list of operations"), nil
		}
		for _, o := range ops {
			t, _ := jsonPointer(o, "/operationType")
			switch s, _ := t.(string); strings.ToLower(s) {
			case "create", "upsert", "replace", "patch", "read":
			case "delete":
				risk = RiskDestructive
			default:
				return unknown(KindCosmos, r, "batch operation "+quoteShort(s)+" not understood"), nil
			}
		}
	case m == "POST" && id == "":
		op, risk = "Create"+noun, RiskWrite
		if strings.EqualFold(h["x-ms-documentdb-is-upsert"], "true") {
			op = "Upsert" + noun
		}
	case m == "PUT" && id != "":
		op, risk = "Replace"+noun, RiskWrite
	case m == "PATCH" && id != "":
		op, risk = "Patch"+noun, RiskWrite
	case m == "DELETE" && id != "":
		op, risk = "Delete"+noun, RiskDestructive
	default:
		return unknown(KindCosmos, r, r.Method+" on "+noun), nil
	}
	switch typ {
	case "sprocs", "triggers", "udfs", "users", "permissions", "offers", "clientencryptionkeys":
		if risk != RiskRead && op != "ExecuteStoredProcedure" {
			risk = RiskAdmin
		}
	}
	if typ == "permissions" || typ == "users" && id != "" && r.Method == "GET" {
		// Reading a permission returns its resource token.
		risk = Higher(risk, RiskAdmin)
	}
	sum := "cosmos " + op
	if db != "" {
		sum += " " + db
		if coll != "" {
			sum += "/" + coll
		}
	}
	if id != "" && typ != "dbs" && typ != "colls" {
		sum += " " + typ + "/" + id
	}
	sum += " on " + r.Connection.Name
	if query != "" {
		sum += ": " + query
	}
	return Action{Kind: KindCosmos, Risk: risk, Summary: oneLine(sum),
		Details: map[string]any{"operation": op, "database": db, "container": coll, "query": query}}, nil
}

// bodyJSON reads r's whole body as strict JSON.
func bodyJSON(r *request.Request) (any, error) {
	b, err := fullBody(r)
	if err != nil {
		return nil, err
	}
	return strictJSON(b)
}
