package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/xds"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with configuration files",
	}
	cmd.AddCommand(newConfigValidateCmd(g))
	return cmd
}

func newConfigValidateCmd(g *globals) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a configuration file and report every error with its key path",
		Long: `Check a configuration file: strict YAML (unknown keys are errors), every
value, and the Envoy resources it turns into. All errors are reported at once,
each with its key path and line. Exit status 0 means the file is valid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usageError{errors.New("--config FILE is required")}
			}
			cfg, err := config.Load(path)
			if err != nil {
				return reportConfigErrors(g, path, err)
			}
			if _, err := xds.Resources(cfg, xds.Options{}); err != nil {
				return fmt.Errorf("%s: the configuration does not make valid Envoy resources: %w", path, err)
			}
			fmt.Fprintf(g.stdout, "%s: valid (%d connections)\n", path, len(cfg.Connections))
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	return cmd
}

// reportConfigErrors prints each configuration error on its own line and
// returns a one-line summary as the command's error; a single error is the
// summary itself. The config package lists at most config.MaxErrors.
func reportConfigErrors(g *globals, path string, err error) error {
	var errs config.Errors
	if !errors.As(err, &errs) {
		return err
	}
	if len(errs) == 1 {
		return fmt.Errorf("%s: %w", path, errs[0])
	}
	for _, e := range errs {
		fmt.Fprintf(g.stderr, "%s: %s\n", path, e)
	}
	if n := errs.Count(); n > len(errs) {
		return fmt.Errorf("%s: %d error(s), the first %d listed", path, n, len(errs)-1)
	}
	return fmt.Errorf("%s: %d error(s)", path, len(errs))
}
