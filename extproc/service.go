// Package extproc implements the two gRPC services Envoy calls for every
// request: Authorization/Check (ext_authz), where the one decision about a
// request is made, and ExternalProcessor/Process (ext_proc), which acts on
// that decision for the rest of the exchange and hands it to the record stage.
//
// Check leaves its decision in dynamic metadata (namespace
// envoy.filters.http.ext_authz); Process reads it back from the forwarded
// metadata and fails closed without it. Process never ends a stream with OK
// on an abnormal exit: Envoy would let the request continue.
package extproc

import (
	"log/slog"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/record"
)

// Service holds the configuration and the stages both gRPC services use.
type Service struct {
	authv3.UnimplementedAuthorizationServer
	extprocv3.UnimplementedExternalProcessorServer

	cfg      atomic.Pointer[config.Config]
	recorder record.Recorder
	log      *slog.Logger
	health   *health.Server
}

// New returns a Service deciding with cfg and recording to recorder.
func New(cfg *config.Config, recorder record.Recorder, logger *slog.Logger) *Service {
	s := &Service{recorder: recorder, log: logger, health: health.NewServer()}
	s.cfg.Store(cfg)
	return s
}

// SetConfig replaces the configuration; requests in flight keep the one
// they started with.
func (s *Service) SetConfig(cfg *config.Config) { s.cfg.Store(cfg) }

// Config returns the configuration new requests use.
func (s *Service) Config() *config.Config { return s.cfg.Load() }

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
