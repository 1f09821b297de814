package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/custos-dev/custos/approvals"
	"github.com/custos-dev/custos/approvals/ui"
	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/record"
)

// ApprovalStore is where approvals of cfg are kept: approvals.store, or
// approvals.db beside the audit directory.
func ApprovalStore(cfg *config.Config) string {
	if cfg.Approvals.Store != "" {
		return cfg.Approvals.Store
	}
	return filepath.Join(filepath.Dir(cfg.Audit.Dir), "approvals.db")
}

// openApprovals opens the approval store and starts the service every
// pipeline asks for grants, and mounts the approvals API on mux.
func (cp *ControlPlane) openApprovals(ctx context.Context, cfg *config.Config, mux *http.ServeMux) error {
	store, err := approvals.Open(ctx, ApprovalStore(cfg))
	if err != nil {
		return fmt.Errorf("approvals.store: %w", err)
	}
	var hooks []approvals.Webhook
	for i, w := range cfg.Approvals.Webhooks {
		secret, err := approvals.LoadSecret(w.SecretFile, w.SecretEnv)
		if err != nil {
			store.Close()
			return fmt.Errorf("approvals.webhooks[%d]: %w", i, err)
		}
		hooks = append(hooks, approvals.Webhook{URL: w.URL, Secret: secret})
	}
	svc, err := approvals.New(approvals.Options{Store: store, Recorder: pipelineRecorder{cp}, Webhooks: hooks,
		Logger: cp.logger(), Expiry: cfg.Approvals.Expiry})
	if err != nil {
		store.Close()
		return fmt.Errorf("approvals: %w", err)
	}
	cp.Approvals, cp.approvalStore = svc, store
	cp.approvalsCfg = cfg.Approvals
	h := approvals.NewHandler(svc, cp.authenticate)
	mux.Handle(approvals.ListPath, h)
	mux.Handle(approvals.PathPrefix, h)
	switch u := cfg.Approvals.UI; {
	case u != nil:
		o := ui.Options{Service: svc, Authenticate: cp.authenticate, Issuer: u.Issuer, ClientID: u.ClientID,
			BaseURL: strings.TrimSuffix(u.BaseURL, "/"), Logger: cp.logger()}
		if u.ClientSecretFile != "" {
			b, err := os.ReadFile(u.ClientSecretFile)
			if err != nil {
				cp.closeApprovals()
				return fmt.Errorf("approvals.ui.client_secret_file: %w", err)
			}
			o.ClientSecret = strings.TrimSpace(string(b))
		}
		mux.Handle(ui.Path, ui.New(o))
	case cp.DevIssuer != nil:
		// Under custos dev approvers sign in with the dev issuer.
		mux.Handle(ui.Path, ui.New(ui.Options{Service: svc, Authenticate: cp.authenticate,
			Issuer: cp.DevIssuer.URL(), BaseURL: HTTPBase(cp.HTTPAddr), Logger: cp.logger()}))
	}
	return nil
}

// sameApprovalsSetup reports whether a reload keeps the store and the
// webhooks, which change only on restart.
func (cp *ControlPlane) sameApprovalsSetup(cfg *config.Config) error {
	old := cp.approvalsCfg
	if old.Store != cfg.Approvals.Store || !reflect.DeepEqual(old.Webhooks, cfg.Approvals.Webhooks) || !reflect.DeepEqual(old.UI, cfg.Approvals.UI) {
		return fmt.Errorf("approvals.store, approvals.webhooks and approvals.ui change only on restart")
	}
	return nil
}

// closeApprovals stops the service and closes its store.
func (cp *ControlPlane) closeApprovals() {
	if cp.Approvals != nil {
		_ = cp.Approvals.Close()
		_ = cp.approvalStore.Close()
	}
}

// authenticate verifies an API caller's bearer token with the identity
// stage in force, as an agent's.
func (cp *ControlPlane) authenticate(ctx context.Context, bearer string) (identity.Principal, error) {
	return cp.Services.Pipeline().Identity().Verify(ctx, identity.Credentials{Bearer: bearer})
}

// pipelineRecorder records through the record stage in force (the audit
// log first), for what happens outside a request: votes and resolutions.
type pipelineRecorder struct{ cp *ControlPlane }

func (r pipelineRecorder) Record(ctx context.Context, e record.Event) error {
	if r.cp.Services == nil {
		return errors.New("the control plane is not serving yet")
	}
	return r.cp.Services.Pipeline().Record(ctx, e)
}
