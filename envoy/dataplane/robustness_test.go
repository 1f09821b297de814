package dataplane_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// These tests hold the data plane to ending every request in bounded time
// and giving back every circuit-breaker slot, whatever the peers do.

func oneSlot(c *clusterv3.Cluster) {
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority: corev3.RoutingPriority_DEFAULT, MaxRequests: wrapperspb.UInt32(1),
	}}}
}

func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not end within %s", what, d)
	}
}

// A STREAMED request body to an upstream that resets the connection ends in
// a 5xx at once, and the ext_proc stream's slot is given back (the second
// request would find the one slot taken otherwise).
func TestStreamedRequestToFailingUpstreamEndsAndFreesItsSlot(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, setup{
			proc:        procConfig(&procfilterv3.ProcessingMode{RequestBodyMode: streamed}),
			grpcCluster: oneSlot,
			hcm:         func(m *hcmv3.HttpConnectionManager) { m.StreamIdleTimeout = durationpbMS(300) },
		})
		h.upstream.handler = func(w http.ResponseWriter, r *http.Request) {
			// Hijack and close: the upstream resets before any response.
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
		}
		for i := 0; i < 2; i++ {
			within(t, 3*time.Second, "a streamed request to a failing upstream", func() {
				resp, body := h.post("/x", strings.Repeat("z", 100000))
				if resp.StatusCode < 500 {
					t.Errorf("status %d: %q", resp.StatusCode, body)
				}
			})
		}
	})
}

// A processor that fails on the first chunk of a STREAMED response while
// the upstream keeps streaming: the client gets a reset promptly, never the
// unprocessed rest.
func TestStreamedResponseProcessorErrorResetsPromptly(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, setup{
			proc:        procConfig(&procfilterv3.ProcessingMode{ResponseBodyMode: streamed}),
			grpcCluster: oneSlot,
			upstream: func(w http.ResponseWriter, r *http.Request) {
				fl := w.(http.Flusher)
				for i := 0; i < 40; i++ {
					fmt.Fprintf(w, "secret-%02d;", i)
					fl.Flush()
					select {
					case <-time.After(50 * time.Millisecond):
					case <-r.Context().Done():
						return
					}
				}
			},
		})
		h.proc.handle = func(c *procConn) error {
			for {
				m, err := c.recv()
				if err != nil {
					return nil
				}
				if m.GetResponseBody() != nil {
					return status.Error(codes.Internal, "masking failed")
				}
				_ = c.Send(continueWith(m, nil))
			}
		}
		within(t, 2*time.Second, "a streamed response whose processor failed", func() {
			resp, err := h.client.Get(h.url + "/x")
			if err != nil {
				return // reset before the headers: fine
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("the response completed (%q) after the processor failed", b)
			}
			if strings.Contains(string(b), "secret-01") {
				t.Errorf("unprocessed chunks reached the client: %q", b)
			}
		})
		// The slot came back: a request without a body succeeds.
		h.proc.handle = nil
		h.upstream.handler = nil
		within(t, 2*time.Second, "the next request", func() {
			resp, body := h.get("/y")
			wantStatus(t, resp, body, 200)
		})
	})
}

// A client that sends part of its body and stalls is answered when the
// stream idle timeout fires (408: the request was still arriving), and the
// slot it held is given back.
func TestStalledUploadIsCutByIdleTimeout(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, setup{
			proc:        procConfig(&procfilterv3.ProcessingMode{RequestBodyMode: buffered}),
			grpcCluster: oneSlot,
			hcm:         func(m *hcmv3.HttpConnectionManager) { m.StreamIdleTimeout = durationpbMS(300) },
		})
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
		within(t, 3*time.Second, "a stalled upload", func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Errorf("no reply: %v", err)
				return
			}
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("status %d, want 408", resp.StatusCode)
			}
		})
		if h.upstream.count() != 0 {
			t.Fatal("a partial body was forwarded")
		}
		within(t, 2*time.Second, "the next request", func() {
			resp, body := h.post("/y", "whole")
			wantStatus(t, resp, body, 200)
		})
	})
}

// With failure_mode_allow, a STREAMED chunk whose reply times out detaches
// the processor: the rest passes unprocessed and a late reply is not
// applied to another chunk.
func TestStreamedTimeoutWithFailureModeAllowDetaches(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		cfg := procConfig(&procfilterv3.ProcessingMode{ResponseBodyMode: streamed})
		cfg.FailureModeAllow = true
		cfg.MessageTimeout = durationpbMS(100)
		h := p.start(t, setup{proc: cfg, upstream: func(w http.ResponseWriter, _ *http.Request) {
			fl := w.(http.Flusher)
			for _, c := range []string{"one;", "two;", "three;"} {
				io.WriteString(w, c)
				fl.Flush()
				time.Sleep(150 * time.Millisecond)
			}
		}})
		h.proc.handle = func(c *procConn) error {
			first := true
			return replyEach(c, func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if m.GetResponseBody() == nil {
					return continueWith(m, nil)
				}
				if first {
					first = false
					time.Sleep(200 * time.Millisecond) // too late for the first chunk
				}
				return continueWith(m, &extprocv3.CommonResponse{BodyMutation: bodyMutation("LATE;")})
			})
		}
		resp, body := h.get("/x")
		wantStatus(t, resp, body, 200)
		if body != "one;two;three;" {
			t.Fatalf("body %q, want the chunks unprocessed once the processor timed out", body)
		}
	})
}
