package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Resource type URLs the data plane subscribes to.
const (
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
)

// adsState is the last accepted (ACKed) version of each type and what it held.
type adsState struct {
	versions  map[string]string
	listener  *listenerConfig
	routes    map[string]*routeTable
	clusters  map[string]*clusterConfig
	routeSubs []string
}

// runADS keeps one ADS stream open, reconnecting with backoff until ctx ends.
// Accepted resources replace the previous ones; rejected ones are NACKed with
// the error and the previous ones keep serving.
func (d *DataPlane) runADS(ctx context.Context) {
	st := &adsState{versions: map[string]string{}, routes: map[string]*routeTable{}, clusters: map[string]*clusterConfig{}}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := d.adsStream(ctx, st)
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("ads stream ended; reconnecting", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func (d *DataPlane) adsStream(ctx context.Context, st *adsState) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(d.xdsConn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: d.opts.NodeID, Cluster: "custos-dataplane", UserAgentName: "custos-dataplane"}
	send := func(typ string, names []string, version, nonce string, nack error) error {
		req := &discoveryv3.DiscoveryRequest{
			Node: node, TypeUrl: typ, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce,
		}
		if nack != nil {
			req.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: nack.Error()}
		}
		return stream.Send(req)
	}
	// Clusters first, then listeners: what a listener refers to arrives before it.
	if err := send(typeCluster, nil, st.versions[typeCluster], "", nil); err != nil {
		return err
	}
	if err := send(typeListener, nil, st.versions[typeListener], "", nil); err != nil {
		return err
	}
	if len(st.routeSubs) > 0 {
		if err := send(typeRoute, st.routeSubs, st.versions[typeRoute], "", nil); err != nil {
			return err
		}
	}
	d.log.Info("ads stream open", "node", d.opts.NodeID)
	// As Envoy does on start, listeners wait for the first clusters: a
	// listener's filters name clusters that must exist when it is applied.
	_, clustersSeen := st.versions[typeCluster]
	var heldListener *discoveryv3.DiscoveryResponse
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("server closed the stream")
			}
			return err
		}
		if resp.GetTypeUrl() == typeListener && !clustersSeen {
			heldListener = resp
			continue
		}
		if err := d.handleResponse(st, resp, send); err != nil {
			return err
		}
		if resp.GetTypeUrl() == typeCluster && !clustersSeen {
			clustersSeen = true
			if heldListener != nil {
				if err := d.handleResponse(st, heldListener, send); err != nil {
					return err
				}
				heldListener = nil
			}
		}
	}
}

type sendFunc func(typ string, names []string, version, nonce string, nack error) error

// handleResponse applies one response and ACKs or NACKs it.
func (d *DataPlane) handleResponse(st *adsState, resp *discoveryv3.DiscoveryResponse, send sendFunc) error {
	typ := resp.GetTypeUrl()
	if err := d.apply(st, resp); err != nil {
		d.nacks.Add(1)
		d.setLastNACK(err.Error())
		d.log.Warn("xds NACK", "type", typ, "version", resp.GetVersionInfo(), "error", err)
		return send(typ, subsFor(st, typ), st.versions[typ], resp.GetNonce(), err)
	}
	st.versions[typ] = resp.GetVersionInfo()
	// Serve what was accepted before saying so, as Envoy does: an ACK means
	// the configuration is in use (a caller waiting for the ACK may send a
	// request at once).
	d.activate(st)
	d.log.Debug("xds ACK", "type", typ, "version", resp.GetVersionInfo())
	if err := send(typ, subsFor(st, typ), resp.GetVersionInfo(), resp.GetNonce(), nil); err != nil {
		return err
	}
	if typ == typeListener && st.listener != nil {
		want := []string{st.listener.hcm.routeConfigName}
		if !slices.Equal(want, st.routeSubs) {
			st.routeSubs = want
			if err := send(typeRoute, want, st.versions[typeRoute], "", nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func subsFor(st *adsState, typ string) []string {
	if typ == typeRoute {
		return st.routeSubs
	}
	return nil
}

// apply translates a whole response (state of the world for its type) and
// swaps it in only if every resource in it is understood.
func (d *DataPlane) apply(st *adsState, resp *discoveryv3.DiscoveryResponse) error {
	switch resp.GetTypeUrl() {
	case typeCluster:
		next := map[string]*clusterConfig{}
		for _, a := range resp.GetResources() {
			c := &clusterv3.Cluster{}
			if err := unmarshal(a.GetTypeUrl(), a.GetValue(), typeCluster, c); err != nil {
				return err
			}
			cc, err := translateCluster(c)
			if err != nil {
				return err
			}
			next[cc.name] = cc
		}
		st.clusters = next
	case typeListener:
		var got *listenerConfig
		for _, a := range resp.GetResources() {
			l := &listenerv3.Listener{}
			if err := unmarshal(a.GetTypeUrl(), a.GetValue(), typeListener, l); err != nil {
				return err
			}
			if got != nil {
				return fmt.Errorf("listener %q: the data plane serves one listener", l.GetName())
			}
			lc, err := translateListener(l)
			if err != nil {
				return err
			}
			if err := d.checkClusters(lc, st.clusters); err != nil {
				return err
			}
			// A listener that cannot bind is refused, not acknowledged.
			if err := d.prepareListener(lc.addr); err != nil {
				return fmt.Errorf("listener %q: %w", lc.name, err)
			}
			got = lc
		}
		st.listener = got
	case typeRoute:
		next := map[string]*routeTable{}
		for _, a := range resp.GetResources() {
			rc := &routev3.RouteConfiguration{}
			if err := unmarshal(a.GetTypeUrl(), a.GetValue(), typeRoute, rc); err != nil {
				return err
			}
			rt, err := translateRoutes(rc)
			if err != nil {
				return err
			}
			next[rt.name] = rt
		}
		st.routes = next
	default:
		return fmt.Errorf("resource type %q is not supported", resp.GetTypeUrl())
	}
	return nil
}

// checkClusters refuses a listener whose filters call a cluster Envoy would
// not have (Envoy rejects such a filter config too).
func (d *DataPlane) checkClusters(l *listenerConfig, clusters map[string]*clusterConfig) error {
	for _, name := range []string{clusterOf(l.hcm.extAuthz), clusterOfProc(l.hcm.extProc)} {
		if name == "" {
			continue
		}
		c, ok := clusters[name]
		if !ok {
			return fmt.Errorf("listener %q: unknown cluster %q for a gRPC service", l.name, name)
		}
		if !c.http2 {
			return fmt.Errorf("listener %q: cluster %q serves a gRPC service but is not HTTP/2", l.name, name)
		}
	}
	return nil
}

func clusterOf(c *extAuthzConfig) string {
	if c == nil {
		return ""
	}
	return c.cluster
}

func clusterOfProc(c *extProcConfig) string {
	if c == nil {
		return ""
	}
	return c.cluster
}

func unmarshal(gotType string, b []byte, want string, into proto.Message) error {
	if gotType != want {
		return fmt.Errorf("resource of type %q in a %q response", gotType, want)
	}
	if err := proto.Unmarshal(b, into); err != nil {
		return fmt.Errorf("decode %s: %w", want, err)
	}
	return nil
}
