package inspect

import (
	"context"
	"strings"
	"testing"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/request"
)

const (
	armUp   = "https://management.azure.com"
	blobUp  = "https://acct.blob.core.windows.net"
	tableUp = "https://acct.table.core.windows.net"
	queueUp = "https://acct.queue.core.windows.net"
)

func TestAzure(t *testing.T) {
	const sa = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa"
	for _, c := range []struct {
		up, method, target string
		service, op        string
		risk               Risk
	}{
		{armUp, "GET", sa + "?api-version=2023-01-01", "arm", "Microsoft.Storage/storageAccounts/read", RiskRead},
		{armUp, "PUT", sa, "arm", "Microsoft.Storage/storageAccounts/write", RiskWrite},
		{armUp, "DELETE", sa, "arm", "Microsoft.Storage/storageAccounts/delete", RiskDestructive},
		{armUp, "POST", sa + "/listKeys?api-version=2023-01-01", "arm", "Microsoft.Storage/storageAccounts/listKeys/action", RiskAdmin},
		{armUp, "POST", strings.ToUpper(sa) + "/LISTKEYS", "arm", "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/action", RiskAdmin},
		{armUp, "POST", "/subscriptions/0000/resourcegroups/rg/providers/microsoft.compute/virtualMachines/vm/runCommand", "arm", "microsoft.compute/virtualMachines/runCommand/action", RiskAdmin},
		{armUp, "POST", "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/k/listClusterAdminCredential", "arm", "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action", RiskAdmin},
		{armUp, "POST", "/subscriptions/0000/providers/Microsoft.Storage/checkNameAvailability", "arm", "Microsoft.Storage/checkNameAvailability/action", RiskRead},
		{armUp, "POST", "/providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01", "arm", "Microsoft.ResourceGraph/resources/query/action", RiskRead},
		{armUp, "PUT", sa + "/providers/Microsoft.Authorization/roleAssignments/1111", "arm", "Microsoft.Authorization/roleAssignments/write", RiskAdmin},
		{armUp, "DELETE", "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Authorization/locks/nodelete", "arm", "Microsoft.Authorization/locks/delete", RiskAdmin},
		{armUp, "DELETE", "/subscriptions/0000/resourceGroups/rg", "arm", "Microsoft.Resources/subscriptions/resourcegroups/delete", RiskDestructive},
		{armUp, "GET", "/subscriptions/0000/resourcegroups", "arm", "Microsoft.Resources/subscriptions/resourcegroups/read", RiskRead},
		{blobUp, "GET", "/?comp=list", "blob", "ListContainers", RiskRead},
		{blobUp, "PUT", "/c?restype=container", "blob", "CreateContainer", RiskWrite},
		{blobUp, "DELETE", "/c?restype=container", "blob", "DeleteContainer", RiskDestructive},
		{blobUp, "PUT", "/c?restype=container&comp=acl", "blob", "SetContainerACL", RiskAdmin},
		{blobUp, "GET", "/c?restype=container&comp=list&sig=SECRETSIG&sv=2022", "blob", "ListBlobs", RiskRead},
		{blobUp, "GET", "/c/dir/file.csv?sig=SECRETSIG", "blob", "GetBlob", RiskRead},
		{blobUp, "PUT", "/c/dir/file.csv", "blob", "PutBlob", RiskWrite},
		{blobUp, "DELETE", "/c/dir/file.csv", "blob", "DeleteBlob", RiskDestructive},
		{blobUp, "POST", "/?restype=service&comp=userdelegationkey", "blob", "GetUserDelegationKey", RiskAdmin},
		{blobUp, "PUT", "/?restype=service&comp=properties", "blob", "SetBlobServiceProperties", RiskAdmin},
		{tableUp, "GET", "/Tables", "table", "QueryTables", RiskRead},
		{tableUp, "POST", "/Tables", "table", "CreateTable", RiskWrite},
		{tableUp, "DELETE", "/Tables('customers')", "table", "DeleteTable", RiskDestructive},
		{tableUp, "DELETE", "/tables('customers')", "table", "DeleteTable", RiskDestructive},
		{tableUp, "GET", "/customers()?$filter=PartitionKey%20eq%20'a'", "table", "QueryEntities", RiskRead},
		{tableUp, "POST", "/customers", "table", "InsertEntity", RiskWrite},
		{tableUp, "MERGE", "/customers(PartitionKey='a',RowKey='1')", "table", "MergeEntity", RiskWrite},
		{tableUp, "DELETE", "/customers(PartitionKey='a',RowKey='1')", "table", "DeleteEntity", RiskDestructive},
		{tableUp, "PUT", "/customers?comp=acl", "table", "TableACLPut", RiskAdmin},
		{queueUp, "GET", "/?comp=list", "queue", "ListQueues", RiskRead},
		{queueUp, "DELETE", "/jobs", "queue", "DeleteQueue", RiskDestructive},
		{queueUp, "GET", "/jobs/messages?peekonly=true", "queue", "PeekMessages", RiskRead},
		{queueUp, "GET", "/jobs/messages", "queue", "GetMessages", RiskWrite},
		{queueUp, "DELETE", "/jobs/messages", "queue", "ClearMessages", RiskDestructive},
		{queueUp, "DELETE", "/jobs/messages/m1?popreceipt=x", "queue", "DeleteMessage", RiskWrite},
	} {
		a := inspectOK(t, Azure{}, req("azure", c.up, c.method, c.target, ""))
		if a.Kind != KindAzure || a.Risk != c.risk || a.Details["service"] != c.service || a.Details["operation"] != c.op {
			t.Errorf("%s %s: %s %v %q, want %s %s %s", c.method, c.target, a.Risk, a.Details, a.Summary, c.risk, c.service, c.op)
		}
		for _, v := range []any{a.Summary, a.Details["resource_id"], a.Details["operation"]} {
			if strings.Contains(v.(string), "SECRETSIG") {
				t.Errorf("%s %s: the SAS signature leaked: %q", c.method, c.target, v)
			}
		}
	}
}

func TestAzureUnknown(t *testing.T) {
	for _, c := range []struct{ up, method, target string }{
		{armUp, "POST", "/batch?api-version=2020-06-01"},
		{armUp, "GET", "/something/else"},
		{armUp, "GET", "/subscriptions/0000%2Fproviders/x"},
		{blobUp, "POST", "/c?restype=container&comp=batch"},
		{blobUp, "PUT", "/c?comp=acl&comp=list"},
		{blobUp, "BREW", "/c"},
		{tableUp, "POST", "/$batch"},
		{tableUp, "DELETE", "/customers"},
		{"https://vault.vault.azure.net", "GET", "/secrets/db"},
	} {
		if a := inspectOK(t, Azure{}, req("azure", c.up, c.method, c.target, "")); a.Risk != RiskUnknown {
			t.Errorf("%s %s %s: %s %q, want unknown", c.up, c.method, c.target, a.Risk, a.Summary)
		}
	}
}

// An emulator or a custom domain: the connection's credential names the
// service, and the request is read as that service's.
func TestAzureServiceFromTheConnectionsCredential(t *testing.T) {
	conn := config.Connection{Name: "tables", Kind: config.KindAzure, Upstream: "http://127.0.0.1:10012/devstoreaccount1",
		Credentials: &config.Credentials{AzureSharedKey: &config.AzureSharedKey{Account: "devstoreaccount1", KeyEnv: "K", Service: "table"}}}
	r := &request.Request{Connection: conn, Method: "DELETE", Path: "/devstoreaccount1/Tables('ledger')", Headers: map[string]string{}}
	a, err := Azure{}.Inspect(context.Background(), r)
	if err != nil || a.Risk != RiskDestructive {
		t.Fatalf("a table delete on Azurite: %+v %v", a, err)
	}
}
