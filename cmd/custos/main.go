// Command custos is the Custos binary: the control plane Envoy calls for
// every request an agent makes (serve), the whole stack on one machine
// (dev), the Go data plane alone (dataplane), and the tools around them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "custos:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "custos:", err)
		os.Exit(1)
	}
}

// usageError is bad input on the command line (exit status 2).
type usageError struct{ error }

// globals are the flags every subcommand shares.
type globals struct {
	logLevel  string
	logFormat string
	stdout    io.Writer
	stderr    io.Writer
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "custos",
		Short: "An identity-aware checkpoint for autonomous agents, as an Envoy plugin",
		Long: `Custos ties every request an agent makes to a non-human identity, checks it
against least-privilege policy, holds risky commands for a human, masks
sensitive fields in responses and records everything as evidence.

Envoy carries the traffic; custos serves Envoy's ext_authz and ext_proc gRPC
services and the xDS configuration that wires them in.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newDevCmd(g),
		newServeCmd(g),
		newDataplaneCmd(g),
		newConfigCmd(g),
		newCertsCmd(g),
		newTokenCmd(g),
		newPolicyCmd(g),
		newAuditCmd(g),
		newApprovalsCmd(g),
		newVersionCmd(g),
	)
	return root
}

// logger builds the process logger from the shared flags.
func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: use text or json", g.logFormat)}
}
