package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/custos-dev/custos/envoy/launch"
	"github.com/custos-dev/custos/stack"
)

// The targets' names, in the order Targets lists them.
const (
	// TargetDirect is the demo upstream called directly.
	TargetDirect = "direct"
	// TargetEnvoy is real Envoy with a plain route and no filters
	// (StartBareEnvoy).
	TargetEnvoy = "envoy"
	// TargetCustosEnvoy is real Envoy with Custos' ext_authz and ext_proc,
	// configured by Custos over xDS.
	TargetCustosEnvoy = "custos-envoy"
	// TargetCustosGo is the Go data plane with both filters.
	TargetCustosGo = "custos-go"
)

// Target is one way of reaching the demo upstream. Every target answers
// the same request, for customer CustomerID, from the same upstream.
type Target struct {
	// Name is one of the Target* constants.
	Name string
	// URL is the request's URL; "" when the target is skipped.
	URL string
	// Skipped says why the target does not run; "" when it does.
	Skipped string
}

// Targets are the benchmark's targets, all running at once in front of one
// demo upstream, so that one run measures each the same way.
type Targets struct {
	// List is every target, skipped ones included, in the order of the
	// Target* constants.
	List []Target
	// EnvoyPath and EnvoyVersion are the Envoy binary the Envoy targets
	// run and the release it reports; "" when they are skipped.
	EnvoyPath, EnvoyVersion string

	up     *Upstream
	bare   *BareEnvoy
	stacks []*Stack
}

// StartTargets starts the demo upstream, Custos on the Go data plane and,
// when Envoy is installed, the bare Envoy and Custos on Envoy, each on
// loopback ports, and returns once every one serves. Without Envoy
// (launch.Find fails) the Envoy targets are skipped with Find's error,
// which says how to get it; an Envoy that is found but does not start is
// an error. ctx bounds the start-up and the targets' life; Close stops them
// either way.
func StartTargets(ctx context.Context) (_ *Targets, err error) {
	t := &Targets{}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if t.up, err = StartUpstream(); err != nil {
		return nil, err
	}
	goStack, err := StartStackFor(ctx, stack.Go, t.up.URL)
	if err != nil {
		return nil, fmt.Errorf("custos on the go data plane: %w", err)
	}
	t.stacks = append(t.stacks, goStack)

	envoyBare := Target{Name: TargetEnvoy}
	envoyCustos := Target{Name: TargetCustosEnvoy}
	if path, ferr := launch.Find(); ferr != nil {
		why := ferr.Error()
		if !errors.Is(ferr, launch.ErrNotFound) {
			why += "; `make envoy` finds or installs Envoy " + launch.WantVersion
		}
		envoyBare.Skipped, envoyCustos.Skipped = why, why
	} else {
		t.EnvoyPath = path
		if t.EnvoyVersion, err = launch.Version(path); err != nil {
			return nil, err
		}
		if t.bare, err = StartBareEnvoy(ctx, path, t.up.Addr); err != nil {
			return nil, err
		}
		envoyBare.URL = t.bare.URL
		envoyStack, err := StartStackFor(ctx, stack.Envoy, t.up.URL)
		if err != nil {
			return nil, fmt.Errorf("custos on envoy: %w", err)
		}
		t.stacks = append(t.stacks, envoyStack)
		envoyCustos.URL = envoyStack.DataPlaneURL
	}
	t.List = []Target{
		{Name: TargetDirect, URL: goStack.DirectURL},
		envoyBare,
		envoyCustos,
		{Name: TargetCustosGo, URL: goStack.DataPlaneURL},
	}
	return t, nil
}

// Target returns the target called name, false if there is none.
func (t *Targets) Target(name string) (Target, bool) {
	for _, tg := range t.List {
		if tg.Name == name {
			return tg, true
		}
	}
	return Target{}, false
}

// Close stops the data planes and control planes, the bare Envoy and the
// upstream. Close the clients' idle connections first for a quick
// shutdown.
func (t *Targets) Close() {
	for _, s := range t.stacks {
		s.Close()
	}
	if t.bare != nil {
		_ = t.bare.Close()
	}
	if t.up != nil {
		t.up.Close()
	}
}
