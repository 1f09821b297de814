package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/credentials/azuritetest"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/mtls"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// approvalHeader presents an approval id with every call, as an agent
// retrying an approved request does.
type approvalHeader string

func (a approvalHeader) Do(req *policy.Request) (*http.Response, error) {
	if a != "" {
		req.Raw().Header.Set("x-custos-approval-id", string(a))
	}
	return req.Next()
}

// The Azure SDK for Go over HTTPS to Custos (the dev CA), in front of real
// Azurite, through both data planes: a SAS-injected blob connection, card
// numbers in a blob masked on the way back, and deleting a table refused
// by policy until an approver approves, then done.
func TestAzureStorageOverTLSWithSASMaskingAndApprovals(t *testing.T) {
	az := azuritetest.Shared(t)
	qp := azuritetest.AccountSAS(t)
	dir := t.TempDir()
	sasFile, keyFile := filepath.Join(dir, "blob.sas"), filepath.Join(dir, "storage.key")
	if err := os.WriteFile(sasFile, []byte(qp.Encode()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(azuritetest.Key), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle")
	if err := os.MkdirAll(filepath.Join(bundle, "custos"), 0o755); err != nil {
		t.Fatal(err)
	}
	rego := `package custos.authz

decision := {"allow": true, "reasons": ["deleting a table loses its entities"], "approval": {"rule": "table-delete", "approvers": ["storage-owners"]}} if {
	input.action.risk == "destructive"
} else := {"allow": true, "reasons": ["ok"]}
`
	if err := os.WriteFile(filepath.Join(bundle, "custos", "authz.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	card := demo.Customers(1, 1)[0].CardNumber

	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		pki, err := mtls.DevPKI(filepath.Join(t.TempDir(), "tls"))
		if err != nil {
			t.Fatal(err)
		}
		s := stacktest.Start(t, dp, stacktest.Options{Config: func(string) (*config.Config, error) {
			return config.Parse([]byte(`listen:
  grpc: 127.0.0.1:0
  xds: 127.0.0.1:0
  http: 127.0.0.1:0
  dataplane: 127.0.0.1:0
  agent_tls: {cert_file: ` + pki.Server.CertFile + `, key_file: ` + pki.Server.KeyFile + `}
policy:
  bundle: ` + bundle + `
connections:
  - name: blobs
    upstream: ` + az.BlobURL + `
    kind: azure
    masking: pci
    credentials:
      sas: {token_file: ` + sasFile + `}
  - name: tables
    upstream: ` + az.TableURL + `
    kind: azure
    credentials:
      azure_shared_key: {account: ` + azuritetest.Account + `, key_file: ` + keyFile + `, service: table}
approvals:
  mode: async
dev:
  issuer: true
`))
		}})
		caPEM, err := os.ReadFile(pki.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		httpsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
		tok, _, err := s.CP.DevIssuer.Mint(devissuer.Claims{Subject: "etl"})
		if err != nil {
			t.Fatal(err)
		}
		var approval approvalHeader
		opts := azcore.ClientOptions{Transport: httpsClient,
			PerCallPolicies: []policy.Policy{agentToken("Bearer " + tok), &approval},
			Retry:           policy.RetryOptions{MaxRetries: -1}}
		base := "https://" + s.Addr
		ctx := context.Background()
		name := string(dp) + "-masked"

		blobs, err := azblob.NewClientWithNoCredential(base+"/blobs", &azblob.ClientOptions{ClientOptions: opts})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := blobs.CreateContainer(ctx, name, nil); err != nil {
			t.Fatalf("create container with SAS injection: %v", err)
		}
		doc := []byte(`{"customer": 7, "card_number": "` + card + `"}`)
		if _, err := blobs.UploadBuffer(ctx, name, "customer.json", doc, &azblob.UploadBufferOptions{
			HTTPHeaders: &blob.HTTPHeaders{BlobContentType: to.Ptr("application/json")}}); err != nil {
			t.Fatalf("upload with SAS injection: %v", err)
		}
		got, err := blobs.DownloadStream(ctx, name, "customer.json", nil)
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		body, _ := io.ReadAll(got.Body)
		got.Body.Close()
		if bytes.Contains(body, []byte(card)) || !json.Valid(body) || !bytes.Contains(body, []byte("REDACTED")) {
			t.Fatalf("the blob came back unmasked or broken (%d bytes)", len(body))
		}

		tables, err := aztables.NewServiceClientWithNoCredential(base+"/tables", &aztables.ClientOptions{ClientOptions: opts})
		if err != nil {
			t.Fatal(err)
		}
		tname := "ledger" + string(dp)
		if _, err := tables.CreateTable(ctx, tname, nil); err != nil {
			t.Fatalf("create table: %v", err)
		}
		_, err = tables.DeleteTable(ctx, tname, nil)
		var re *azcore.ResponseError
		if err == nil || !errorsAs(err, &re) || re.StatusCode != 403 {
			t.Fatalf("deleting a table without approval: %v", err)
		}
		raw, _ := io.ReadAll(re.RawResponse.Body)
		id := between(string(raw), `"approval_id":"`, `"`)
		if id == "" {
			t.Fatalf("no approval id in %s", raw)
		}
		approver, _, err := s.CP.DevIssuer.Mint(devissuer.Claims{Subject: "olga", Human: true, Groups: []string{"storage-owners"}})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", "http://"+s.CP.HTTPAddr+"/v1/approvals/"+id+"/approve", strings.NewReader(`{"comment": "retired table"}`))
		req.Header.Set("authorization", "Bearer "+approver)
		if r, b := do(t, req); r.StatusCode != 200 {
			t.Fatalf("approve: %d %s", r.StatusCode, b)
		}
		approval = approvalHeader(id)
		if _, err := tables.DeleteTable(ctx, tname, nil); err != nil {
			t.Fatalf("the approved delete: %v", err)
		}
		approval = ""
		if strings.Contains(s.Log.String(), qp.Signature()) {
			t.Fatal("the SAS signature is in the log")
		}
	})
}

func errorsAs(err error, target **azcore.ResponseError) bool {
	return errors.As(err, target)
}
