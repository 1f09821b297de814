package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/spf13/cobra"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/policy"
	"github.com/custos-dev/custos/policies"
)

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Test policy bundles and evaluate decisions",
	}
	cmd.AddCommand(newPolicyTestCmd(g), newPolicyEvalCmd(g))
	return cmd
}

// defaultBundle is ./policies when it exists (a checkout, or a copy being
// edited), else the bundle built into the binary.
func defaultBundle() string {
	if st, err := os.Stat("policies"); err == nil && st.IsDir() {
		return "policies"
	}
	return config.BuiltinBundle
}

// extractBuiltin writes the built-in bundle to a temporary directory, for
// the tools that read bundles from disk.
func extractBuiltin() (string, func(), error) {
	dir, err := os.MkdirTemp("", "custos-policy-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	err = fs.WalkDir(policies.Bundle, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dir, p), 0o755)
		}
		b, err := fs.ReadFile(policies.Bundle, p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return dir, cleanup, nil
}

func newPolicyTestCmd(g *globals) *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test [DIR]",
		Short: "Run a bundle's Rego tests (*_test.rego)",
		Long: `Run the Rego tests of a policy bundle directory, as ` + "`opa test`" + ` would: every
rule named test_* in the bundle's *_test.rego files, with the bundle's data.
DIR defaults to ./policies when it exists, else the default bundle built into
custos. Exit status 0 means every test passed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := defaultBundle()
			if len(args) == 1 {
				dir = args[0]
			}
			name := dir
			if dir == config.BuiltinBundle {
				tmp, cleanup, err := extractBuiltin()
				if err != nil {
					return err
				}
				defer cleanup()
				dir = tmp
			} else if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return fmt.Errorf("%s is not a bundle directory", dir)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			results, err := tester.Run(ctx, dir)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if len(results) == 0 {
				return fmt.Errorf("%s has no Rego tests (rules named test_* in *_test.rego files)", name)
			}
			failed := 0
			for _, r := range results {
				status := "PASS"
				switch {
				case r.Error != nil:
					status, failed = "ERROR", failed+1
				case r.Fail:
					status, failed = "FAIL", failed+1
				case r.Skip:
					status = "SKIP"
				}
				if verbose || status != "PASS" {
					fmt.Fprintf(g.stdout, "%-5s %s.%s (%s)\n", status, r.Package, r.Name, r.Duration.Round(time.Microsecond))
					if r.Error != nil {
						fmt.Fprintf(g.stdout, "      %v\n", r.Error)
					}
				}
			}
			fmt.Fprintf(g.stdout, "%s: %d tests, %d passed, %d failed\n", name, len(results), len(results)-failed, failed)
			if failed > 0 {
				return fmt.Errorf("%d of %d Rego tests failed", failed, len(results))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every test, not only the failures")
	return cmd
}

func newPolicyEvalCmd(g *globals) *cobra.Command {
	var input, bundleFlag string
	cmd := &cobra.Command{
		Use:   "eval --input FILE [--bundle DIR]",
		Short: "Evaluate one decision for a policy input document",
		Long: `Evaluate data.custos.authz.decision for the policy input document in FILE
(JSON, as docs/policy.md describes it; - reads stdin) and print the decision,
the rules that fired, and the parts of the input the decision read (requests
equal in those share it in the decision cache). --bundle is a bundle directory, a bundle server URL
or builtin:default; it defaults to ./policies when it exists, else the
built-in bundle. Exit status 0 means a decision was made (allowed or not).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" {
				return usageError{errors.New("--input FILE is required")}
			}
			var raw []byte
			var err error
			if input == "-" {
				raw, err = io.ReadAll(io.LimitReader(os.Stdin, 8<<20))
			} else {
				raw, err = os.ReadFile(input)
			}
			if err != nil {
				return err
			}
			var doc any
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.UseNumber()
			if err := dec.Decode(&doc); err != nil {
				return fmt.Errorf("%s: not JSON: %w", input, err)
			}
			if _, ok := doc.(map[string]any); !ok {
				return fmt.Errorf("%s: the input must be a JSON object", input)
			}
			b := bundleFlag
			if b == "" {
				b = defaultBundle()
			}
			var src policy.Source
			switch {
			case b == config.BuiltinBundle:
				src = policy.FS(b, policies.Bundle)
			case strings.HasPrefix(b, "http://") || strings.HasPrefix(b, "https://"):
				src = policy.Server(b, nil)
			default:
				src = policy.Dir(b)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			r, err := policy.NewRego(ctx, policy.RegoOptions{Source: src, PollInterval: time.Hour})
			if err != nil {
				return err
			}
			defer r.Close()
			d, fired, err := r.Explain(ctx, doc)
			if err != nil {
				return err
			}
			out := map[string]any{"allow": d.Allow, "reasons": d.Reasons, "revision": d.Revision}
			if d.Reasons == nil {
				out["reasons"] = []string{}
			}
			if d.MaskProfile != "" {
				out["mask_profile"] = d.MaskProfile
			}
			if a := d.Approval; a != nil {
				ap := map[string]any{"rule": a.Rule, "approvers": a.Approvers, "min_approvals": a.MinApprovals, "scope": a.Scope}
				if a.TTL > 0 {
					ap["ttl"] = a.TTL.String()
				}
				out["approval"] = ap
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(out); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "rules that fired:")
			for _, f := range fired {
				fmt.Fprintf(g.stdout, "  %s  (%s)\n", f.Rule, f.Location)
			}
			reads, err := r.Reads(ctx, doc)
			switch {
			case errors.Is(err, policy.ErrNotCached):
				fmt.Fprintf(g.stdout, "input read: %v\n", err)
			case err != nil:
				return err
			default:
				fmt.Fprintln(g.stdout, "input read (the decision cache shares this decision with requests equal in these):")
				for _, p := range reads {
					fmt.Fprintf(g.stdout, "  %s\n", p)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "the policy input document (JSON file, or - for stdin)")
	cmd.Flags().StringVar(&bundleFlag, "bundle", "", "bundle directory, bundle server URL or builtin:default (default ./policies, else built-in)")
	return cmd
}
