package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/controlplane"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/examples"
)

func newTokenCmd(g *globals) *cobra.Command {
	var (
		path, sub, groups, roles string
		ttl                      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token --sub NAME [--groups a,b] [--roles r] [--ttl 1h] [--config FILE]",
		Short: "Get an agent token from the dev issuer of a running `custos dev` (dev only)",
		Long: `Get a workload token from the dev OIDC issuer that ` + "`custos dev`" + ` runs when
dev.issuer is set (the built-in example sets it). The token is asked for as a
workload asks a real IdP: the client_credentials grant, with the client id
--sub and the dev secret from the issuer's directory (beside audit.dir). The
token alone goes to stdout, so that

  curl -H "authorization: Bearer $(custos token --sub nightly-etl)" ...

works. Give the same --config as ` + "`custos dev`" + ` (default: the built-in example).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sub == "" {
				return usageError{errors.New("--sub NAME is required")}
			}
			if ttl < 0 || ttl > devissuer.MaxTTL {
				return usageError{fmt.Errorf("--ttl must be between 0 and %s", devissuer.MaxTTL)}
			}
			var cfg *config.Config
			var err error
			if path == "" {
				if cfg, err = config.Parse(examples.DevConfig); err != nil {
					return fmt.Errorf("built-in example: %w", err)
				}
			} else if cfg, err = config.Load(path); err != nil {
				return reportConfigErrors(g, path, err)
			}
			if cfg.Dev == nil || !cfg.Dev.Issuer {
				return errors.New("this configuration does not run the dev issuer (dev.issuer: true); get tokens from your IdP")
			}
			if _, port, err := net.SplitHostPort(cfg.Listen.HTTP); err != nil || port == "0" {
				return fmt.Errorf("listen.http is %q: custos token finds the dev issuer on a fixed listen.http port", cfg.Listen.HTTP)
			}
			secretFile := devissuer.SecretPath(controlplane.DevIssuerDir(cfg))
			secret, err := devissuer.ReadSecret(secretFile)
			if err != nil {
				return fmt.Errorf("the dev secret: %w (has `custos dev` run with this configuration?)", err)
			}
			tok, err := fetchToken(cmd.Context(), controlplane.DevIssuerURL(cfg.Listen.HTTP), secret, sub, groups, roles, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "the configuration `custos dev` runs (default: the built-in example)")
	cmd.Flags().StringVar(&sub, "sub", "", "the workload the token is for (its subject and client id)")
	cmd.Flags().StringVar(&groups, "groups", "", "comma-separated groups the token carries")
	cmd.Flags().StringVar(&roles, "roles", "", "comma-separated roles the token carries")
	cmd.Flags().DurationVar(&ttl, "ttl", devissuer.DefaultTTL, "the token's lifetime")
	return cmd
}

// fetchToken asks the dev issuer for a token with the client_credentials
// grant, as a workload asks its IdP.
func fetchToken(ctx context.Context, issuer, secret, sub, groups, roles string, ttl time.Duration) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {sub}, "client_secret": {secret}}
	if groups != "" {
		form.Set("groups", groups)
	}
	if roles != "" {
		form.Set("roles", roles)
	}
	if ttl > 0 {
		form.Set("ttl", ttl.String())
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, issuer+devissuer.TokenPath, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("content-type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot reach the dev issuer at %s: is `custos dev` running with this configuration?", issuer)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil {
		return "", fmt.Errorf("the dev issuer at %s answered %d without JSON", issuer, resp.StatusCode)
	}
	if resp.StatusCode != 200 || body.AccessToken == "" {
		return "", fmt.Errorf("the dev issuer refused: %s: %s", body.Error, body.Description)
	}
	return body.AccessToken, nil
}
