package controlplane

import (
	"context"
	"time"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/xds"
)

// AgentTLSPoll is how often the agent TLS files are checked for a renewed
// certificate.
const AgentTLSPoll = 2 * time.Second

// watchAgentTLS resends the data plane's configuration when the files of
// listen.agent_tls change (their digest names the listener's filter chain,
// so the data plane loads them again), until ctx ends.
func (cp *ControlPlane) watchAgentTLS(ctx context.Context, t *config.AgentTLS) {
	last, _ := xds.AgentTLSStamp(t)
	tick := time.NewTicker(AgentTLSPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		stamp, err := xds.AgentTLSStamp(t)
		if err != nil || stamp == last {
			// A file being replaced can be missing for a moment: the last
			// good certificate keeps serving.
			continue
		}
		if _, err := cp.XDS.Update(ctx, cp.Services.Pipeline().Config()); err != nil {
			cp.logger().Error("listen.agent_tls changed but could not be sent", "error", err)
			continue
		}
		last = stamp
		cp.logger().Info("listen.agent_tls reloaded", "stamp", stamp)
	}
}
