package xds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/custos-dev/custos/config"
)

// snapshotKey is the one cache key: every node (Envoy or data plane) gets the
// same configuration.
const snapshotKey = "custos"

type anyNode struct{}

func (anyNode) ID(*corev3.Node) string { return snapshotKey }

// Server is the ADS control plane: a snapshot cache holding the resources of
// the current configuration and a go-control-plane server streaming them.
type Server struct {
	opts   Options
	log    *slog.Logger
	cache  cachev3.SnapshotCache
	server serverv3.Server

	mu      sync.Mutex
	version string
	acks    map[string]string // type URL → last version a node acknowledged
	nack    string            // last error a node reported, "" when none
	// changed is closed and replaced on every ACK or NACK, so waiters wake
	// on the signal instead of polling.
	changed chan struct{}
}

// NewServer returns a control plane with an empty cache; call Update with a
// configuration before nodes can receive anything.
func NewServer(ctx context.Context, logger *slog.Logger, opts Options) *Server {
	s := &Server{opts: opts, log: logger, acks: map[string]string{}, changed: make(chan struct{})}
	s.cache = cachev3.NewSnapshotCache(true, anyNode{}, nil)
	s.server = serverv3.NewServer(ctx, s.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: s.onRequest,
	})
	return s
}

// Register adds the ADS service to g.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.server)
}

// Snapshot builds a consistent, validated snapshot of cfg. Its version is a
// digest of the resources, so an unchanged configuration keeps its version.
func Snapshot(cfg *config.Config, opts Options) (*cachev3.Snapshot, error) {
	res, err := Resources(cfg, opts)
	if err != nil {
		return nil, err
	}
	version, err := digest(res)
	if err != nil {
		return nil, err
	}
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		return nil, fmt.Errorf("new snapshot: %w", err)
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("snapshot is not consistent: %w", err)
	}
	return snap, nil
}

func digest(res map[resource.Type][]types.Resource) (string, error) {
	h := sha256.New()
	typs := make([]string, 0, len(res))
	for t := range res {
		typs = append(typs, t)
	}
	sort.Strings(typs)
	opts := proto.MarshalOptions{Deterministic: true}
	for _, t := range typs {
		h.Write([]byte(t))
		for _, r := range res[t] {
			b, err := opts.Marshal(r)
			if err != nil {
				return "", fmt.Errorf("marshal %s: %w", t, err)
			}
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Update makes cfg the served configuration. On error the previous snapshot
// stays in place and nodes keep what they have.
func (s *Server) Update(ctx context.Context, cfg *config.Config) (string, error) {
	snap, err := Snapshot(cfg, s.opts)
	if err != nil {
		return "", err
	}
	version := snap.GetVersion(resource.ListenerType)
	if err := s.cache.SetSnapshot(ctx, snapshotKey, snap); err != nil {
		return "", fmt.Errorf("set snapshot: %w", err)
	}
	s.mu.Lock()
	changed := s.version != version
	s.version = version
	s.mu.Unlock()
	if changed {
		s.log.Info("xds snapshot", "version", version, "connections", len(cfg.Connections))
	}
	return version, nil
}

// SetSnapshot serves a prepared snapshot as it is. Update is the way to serve
// a configuration; this exists for tests that must serve resources Custos
// itself never emits (to see a node refuse them).
func (s *Server) SetSnapshot(ctx context.Context, snap *cachev3.Snapshot) error {
	return s.cache.SetSnapshot(ctx, snapshotKey, snap)
}

// Version is the version of the served snapshot, "" before the first Update.
func (s *Server) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Status reports, per resource type, the last version a node acknowledged and
// the last error a node sent back with a NACK.
func (s *Server) Status() (acked map[string]string, lastNACK string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	acked = make(map[string]string, len(s.acks))
	for k, v := range s.acks {
		acked[k] = v
	}
	return acked, s.nack
}

func (s *Server) onRequest(_ int64, req *discoveryv3.DiscoveryRequest) error {
	if req.GetResponseNonce() == "" {
		return nil // a subscription, not a reply to a response
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		close(s.changed)
		s.changed = make(chan struct{})
	}()
	if d := req.GetErrorDetail(); d != nil {
		s.nack = d.GetMessage()
		s.log.Warn("xds NACK", "node", req.GetNode().GetId(), "type", req.GetTypeUrl(), "error", d.GetMessage())
		return nil
	}
	s.acks[req.GetTypeUrl()] = req.GetVersionInfo()
	return nil
}

// WaitACK returns once a node has acknowledged version for listeners,
// routes and clusters, or with the node's NACK message once one arrives for
// a version it was sent after the call, or when ctx ends.
func (s *Server) WaitACK(ctx context.Context, version string) error {
	types := []string{resource.ListenerType, resource.RouteType, resource.ClusterType}
	s.mu.Lock()
	nackBefore := s.nack
	s.mu.Unlock()
	for {
		s.mu.Lock()
		done := true
		for _, t := range types {
			done = done && s.acks[t] == version
		}
		nack, changed := s.nack, s.changed
		s.mu.Unlock()
		if done {
			return nil
		}
		if nack != nackBefore && nack != "" {
			return fmt.Errorf("version %s NACKed: %s", version, nack)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("version %s not acknowledged: %w", version, ctx.Err())
		}
	}
}
