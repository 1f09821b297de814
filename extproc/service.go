// Package extproc implements the two gRPC services Envoy calls for every
// request: Authorization/Check (ext_authz), where the one decision about a
// request is made, and ExternalProcessor/Process (ext_proc), which acts on
// that decision for the rest of the exchange. It composes the stages of
// package filters into a Pipeline, built once per configuration; it knows
// gRPC and Envoy's types so that the stages do not.
//
// Check leaves its Verdict in dynamic metadata (namespace
// names.VerdictNamespace); Process reads it back from the forwarded
// metadata and fails closed without it. Process never ends a stream with OK
// on an abnormal exit: Envoy would let the request continue.
//
// docs/architecture.md walks through a request's path.
package extproc

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Service serves Check and Process with the current Pipeline.
type Service struct {
	authv3.UnimplementedAuthorizationServer
	extprocv3.UnimplementedExternalProcessorServer

	pipeline atomic.Pointer[Pipeline]
	log      *slog.Logger
	health   *health.Server
	// pending are the decisions Check is still making durable
	// (before_response), by request id, until Process takes them.
	pending pendingRecords
	// metrics, when set, are counted into (SetMetrics).
	metrics atomic.Pointer[Metrics]
}

// New returns a Service deciding with p.
func New(p *Pipeline, logger *slog.Logger) *Service {
	s := &Service{log: logger, health: health.NewServer()}
	s.pipeline.Store(p)
	return s
}

// SetPipeline replaces the pipeline; requests in flight keep the one they
// started with.
func (s *Service) SetPipeline(p *Pipeline) { s.pipeline.Store(p) }

// Pipeline returns the pipeline new requests use.
func (s *Service) Pipeline() *Pipeline { return s.pipeline.Load() }

// Register adds Authorization, ExternalProcessor and gRPC health to g and
// marks them serving.
func (s *Service) Register(g *grpc.Server) {
	authv3.RegisterAuthorizationServer(g, s)
	extprocv3.RegisterExternalProcessorServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
	for _, name := range []string{"", authv3.Authorization_ServiceDesc.ServiceName, extprocv3.ExternalProcessor_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
}

// Shutdown marks every service not serving, so health checks drain traffic
// before the server stops.
func (s *Service) Shutdown() { s.health.Shutdown() }

var errRecordPanic = errors.New("the record stage panicked")

func joinProfile(names []string) string { return strings.Join(names, "+") }
