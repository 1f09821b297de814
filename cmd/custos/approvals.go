package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// approvalsClient calls the approvals API of a running custos.
type approvalsClient struct {
	server string
	token  string
	http   *http.Client
}

func newApprovalsCmd(g *globals) *cobra.Command {
	c := &approvalsClient{http: &http.Client{}}
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List, show, approve, deny, revoke and wait for approvals from the shell",
		Long: `Work with the approvals API of a running custos (listen.http):

  custos approvals list [--status pending]   what you may see: yours, or those you may approve
  custos approvals show ID                   one approval as JSON
  custos approvals approve ID [--comment C]  a vote for
  custos approvals deny ID [--reason R]      a vote against: the request is denied
  custos approvals revoke ID                 end a grant (or a pending request) early
  custos approvals wait ID [--timeout 5m]    until it is resolved; exit 0 only if approved

The token is --token or the environment variable CUSTOS_TOKEN: an approver's
OIDC token, or an agent's to follow its own requests. It is never printed.`,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if c.token == "" {
				c.token = os.Getenv("CUSTOS_TOKEN")
			}
			if c.token == "" {
				return usageError{errors.New("no token: give --token or set CUSTOS_TOKEN")}
			}
			u, err := url.Parse(c.server)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usageError{fmt.Errorf("--server %q: give an http(s) URL such as http://127.0.0.1:9090", c.server)}
			}
			c.server = strings.TrimRight(c.server, "/")
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&c.server, "server", "http://127.0.0.1:9090", "custos HTTP address (listen.http)")
	cmd.PersistentFlags().StringVar(&c.token, "token", "", "bearer token (default $CUSTOS_TOKEN)")

	var status string
	list := &cobra.Command{
		Use:   "list [--status pending]",
		Short: "List the approvals you may see",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Approvals []apiApproval `json:"approvals"`
			}
			if err := c.call(cmd.Context(), http.MethodGet, "/v1/approvals?status="+url.QueryEscape(status), nil, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tREQUESTER\tCONNECTION\tRULE\tEXPIRES\tSUMMARY")
			for _, a := range out.Approvals {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.State, a.Requester.Issuer+"/"+a.Requester.Subject, a.Connection, a.Rule,
					a.Expires.Local().Format(time.DateTime), oneLine(a.Summary, 80))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&status, "status", "", "only approvals in this state: pending, approved, denied, expired, used or revoked")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one approval as JSON: requester, connection, action, fingerprint, state, votes, expiry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var raw json.RawMessage
			if err := c.call(cmd.Context(), http.MethodGet, "/v1/approvals/"+url.PathEscape(args[0]), nil, &raw); err != nil {
				return err
			}
			var b bytes.Buffer
			if err := json.Indent(&b, raw, "", "  "); err != nil {
				return err
			}
			b.WriteByte('\n')
			_, err := g.stdout.Write(b.Bytes())
			return err
		},
	}

	var comment, reason string
	vote := func(use, short, op string, body func() any) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var a apiApproval
				if err := c.call(cmd.Context(), http.MethodPost, "/v1/approvals/"+url.PathEscape(args[0])+"/"+op, body(), &a); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "%s %s\n", a.ID, a.State)
				return nil
			},
		}
	}
	approve := vote("approve ID [--comment TEXT]", "Vote to approve", "approve", func() any { return map[string]string{"comment": comment} })
	approve.Flags().StringVar(&comment, "comment", "", "why, for the record")
	deny := vote("deny ID [--reason TEXT]", "Vote to deny: the request is denied", "deny", func() any { return map[string]string{"reason": reason} })
	deny.Flags().StringVar(&reason, "reason", "", "why, for the record and the agent")
	revoke := vote("revoke ID", "End a grant, or a pending request, early", "revoke", func() any { return map[string]string{} })

	var timeout time.Duration
	wait := &cobra.Command{
		Use:   "wait ID [--timeout 5m]",
		Short: "Wait until an approval is resolved; print its state; exit 0 only if approved",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			deadline := time.Now().Add(timeout)
			for {
				left := time.Until(deadline).Round(time.Second)
				var a apiApproval
				path := "/v1/approvals/" + url.PathEscape(args[0]) + "/wait?timeout=" + max(left, 0).String()
				if err := c.call(ctx, http.MethodGet, path, nil, &a); err != nil {
					return err
				}
				if a.State != "pending" || left <= 0 {
					fmt.Fprintf(g.stdout, "%s %s\n", a.ID, a.State)
					if a.State != "approved" {
						return fmt.Errorf("approval %s is %s", a.ID, a.State)
					}
					return nil
				}
			}
		},
	}
	wait.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait")

	cmd.AddCommand(list, show, approve, deny, revoke, wait)
	return cmd
}

// apiApproval is what the CLI reads of an approval.
type apiApproval struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Requester struct {
		Issuer  string `json:"issuer"`
		Subject string `json:"subject"`
	} `json:"requester"`
	Connection string    `json:"connection"`
	Rule       string    `json:"rule"`
	Summary    string    `json:"summary"`
	Expires    time.Time `json:"expires"`
}

// oneLine cuts s to one line of at most n characters.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// call sends one API request and decodes the answer into out; an error
// answer becomes "STATUS CODE: message".
func (c *approvalsClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("content-type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, c.server+strings.SplitN(path, "?", 2)[0], err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Message string }
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("%d %s: %s", resp.StatusCode, e.Error, e.Message)
		}
		return fmt.Errorf("%s %s: %s", method, strings.SplitN(path, "?", 2)[0], resp.Status)
	}
	return json.Unmarshal(raw, out)
}
