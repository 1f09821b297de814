package dataplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ExtAuthz.with_request_body (BufferSettings.max_request_bytes): a body
// within the limit is sent whole in CheckRequest.attributes.request.http.body.
// Mirrors (docs/envoy-references.md): row 1a; CheckRequestUtilsTest.BasicHttpWithFullBody.
func TestExtAuthzWithRequestBodyWithinLimit(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		cfg := authzConfig()
		cfg.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: 16}
		h := p.start(t, setup{authz: cfg})
		resp, body := h.post("/x", "0123456789")
		wantStatus(t, resp, body, 200)
		got := h.authz.last(t).GetAttributes().GetRequest().GetHttp()
		if got.GetBody() != "0123456789" || len(got.GetRawBody()) != 0 {
			t.Fatalf("check body %q raw %q", got.GetBody(), got.GetRawBody())
		}
		if up := h.upstream.last(t); up.body != "0123456789" {
			t.Fatalf("upstream body %q", up.body)
		}
	})
}

// BufferSettings.max_request_bytes: over the limit without
// allow_partial_message the request is answered 413 and never checked; the
// reply is the filter manager's, body "Payload Too Large".
// Mirrors (docs/envoy-references.md): row 1a; HttpFilterTest.RequestDataIsTooLarge.
func TestExtAuthzWithRequestBodyOverLimitIs413(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		cfg := authzConfig()
		cfg.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: 4}
		h := p.start(t, setup{authz: cfg, details: true})
		resp, body := h.post("/x", "0123456789")
		wantStatus(t, resp, body, 413)
		wantDetails(t, resp, "request_payload_too_large")
		if body != "Payload Too Large" || resp.Header.Get("content-type") != "text/plain" {
			t.Errorf("reply %q (%s), want Payload Too Large (text/plain)", body, resp.Header.Get("content-type"))
		}
		if h.authz.calls() != 0 || h.upstream.count() != 0 {
			t.Fatal("a body over the limit was checked or forwarded")
		}
	})
}

// BufferSettings.allow_partial_message: the prefix is checked, with
// x-envoy-auth-partial-body: true; pack_as_bytes sends it as raw_body.
// Mirrors (docs/envoy-references.md): rows 1b, 1c; HttpFilterTest.RequestDataWithPartialMessage, CheckRequestUtilsTest.BasicHttpWithPartialBody.
func TestExtAuthzAllowPartialMessageSendsPrefix(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		cfg := authzConfig()
		cfg.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: 4, AllowPartialMessage: true, PackAsBytes: true}
		h := p.start(t, setup{authz: cfg})
		resp, body := h.post("/x", "0123456789")
		wantStatus(t, resp, body, 200)
		got := h.authz.last(t).GetAttributes().GetRequest().GetHttp()
		if string(got.GetRawBody()) != "0123" || got.GetBody() != "" {
			t.Fatalf("check raw_body %q body %q, want the 4-byte prefix as bytes", got.GetRawBody(), got.GetBody())
		}
		if got.GetHeaders()["x-envoy-auth-partial-body"] != "true" {
			t.Fatalf("x-envoy-auth-partial-body = %q", got.GetHeaders()["x-envoy-auth-partial-body"])
		}
		up := h.upstream.last(t)
		if up.body != "0123456789" {
			t.Fatalf("upstream body %q, want the whole body", up.body)
		}
		if up.header.Get("x-envoy-auth-partial-body") != "" {
			t.Fatal("x-envoy-auth-partial-body exists only in the CheckRequest, never upstream")
		}
		// A client cannot claim the body is whole.
		resp, body = h.post("/x", "01", "x-envoy-auth-partial-body", "forged")
		wantStatus(t, resp, body, 200)
		if v := h.authz.last(t).GetAttributes().GetRequest().GetHttp().GetHeaders()["x-envoy-auth-partial-body"]; v != "false" {
			t.Fatalf("x-envoy-auth-partial-body %q for a whole body sent with a forged header", v)
		}
	})
}

// AttributeContext: source and destination addresses, context_extensions of
// the route, lower-case headers with pseudo-headers, repeated headers
// joined with ",", the path with its query and undecoded, method, host,
// scheme, protocol, size, Envoy's stream id, and empty metadata_context and
// route_metadata_context.
// Mirrors (docs/envoy-references.md): row 2; CheckRequestUtilsTest.*, HttpFilterTestParam.ImmediateOkResponseWithHttpAttributes.
func TestExtAuthzCheckRequestAttributes(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, setup{authz: authzConfig()})
		req := mustRequest(t, "POST", h.url+"/a%20b/c?q=1&r=%2F", "body!")
		req.Header.Add("X-Repeat", "one")
		req.Header.Add("X-Repeat", "two")
		req.Header.Set("X-Mixed-Case", "V")
		resp, body := h.do(req)
		wantStatus(t, resp, body, 200)
		a := h.authz.last(t).GetAttributes()
		hr := a.GetRequest().GetHttp()
		if hr.GetPath() != "/a%20b/c?q=1&r=%2F" {
			t.Errorf("path %q, want it with query and undecoded", hr.GetPath())
		}
		// size is what Envoy had received when the check started: nothing of
		// the body without with_request_body.
		if hr.GetMethod() != "POST" || hr.GetScheme() != "http" || hr.GetProtocol() != "HTTP/1.1" || hr.GetSize() != 0 {
			t.Errorf("method %q scheme %q protocol %q size %d", hr.GetMethod(), hr.GetScheme(), hr.GetProtocol(), hr.GetSize())
		}
		if hr.GetHost() != strings.TrimPrefix(h.url, "http://") || hr.GetId() == "" {
			t.Errorf("host %q id %q", hr.GetHost(), hr.GetId())
		}
		hd := hr.GetHeaders()
		if hd["x-repeat"] != "one,two" {
			t.Errorf("repeated header %q, want one,two", hd["x-repeat"])
		}
		if hd["x-mixed-case"] != "V" {
			t.Errorf("headers are not lower-cased: %v", hd)
		}
		for _, k := range []string{":method", ":path", ":authority", ":scheme"} {
			if hd[k] == "" {
				t.Errorf("pseudo-header %s missing", k)
			}
		}
		if a.GetMetadataContext() == nil || a.GetRouteMetadataContext() == nil {
			t.Errorf("metadata_context %v route_metadata_context %v: Envoy sends both, empty", a.GetMetadataContext(), a.GetRouteMetadataContext())
		}
		if a.GetContextExtensions()["connection"] != "test" {
			t.Errorf("context_extensions %v", a.GetContextExtensions())
		}
		if a.GetSource().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" ||
			a.GetDestination().GetAddress().GetSocketAddress().GetPortValue() == 0 {
			t.Errorf("source %v destination %v", a.GetSource(), a.GetDestination())
		}
	})
}

// OkHttpResponse: headers overwrite by default (append false) or, with
// append true, join onto an existing header with "," (nothing when absent;
// Envoy 1.36's gRPC client, HttpFilterTestParam.ImmediateOkResponseWithHttpAttributes); headers_to_remove never touches pseudo-headers or host;
// query_parameters_to_set/remove; response_headers_to_add reach the client.
// Mirrors (docs/envoy-references.md): rows 3a–3d; HttpFilterTest.HeadersToRemoveRemovesHeadersExceptSpecialHeaders.
func TestExtAuthzOKResponseMutations(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, setup{authz: authzConfig()})
		h.authz.check = func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			r := allow()
			ok := r.GetOkResponse()
			ok.Headers = []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "x-overwrite", Value: "new"}},
				{Header: &corev3.HeaderValue{Key: "x-append", Value: "second"}, Append: wrapperspb.Bool(true)},
				{Header: &corev3.HeaderValue{Key: "x-append-absent", Value: "v"}, Append: wrapperspb.Bool(true)},
			}
			ok.HeadersToRemove = []string{"x-remove-me", ":path", "host"}
			// Values go on as given: the service encodes them (a SAS
			// signature holds + / =).
			ok.QueryParametersToSet = []*corev3.QueryParameter{{Key: "set", Value: "1"}, {Key: "sig", Value: "a%2Bb%2Fc%3D"}}
			ok.QueryParametersToRemove = []string{"drop"}
			ok.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-to-client", Value: "hi"}}}
			return r, nil
		}
		resp, body := h.get("/p?drop=1&keep=2&odd=%zz&set=old", "x-overwrite", "old", "x-append", "first", "x-remove-me", "1")
		wantStatus(t, resp, body, 200)
		up := h.upstream.last(t)
		if v := up.header.Values("x-overwrite"); len(v) != 1 || v[0] != "new" {
			t.Errorf("x-overwrite %v, want [new]", v)
		}
		if v := up.header.Values("x-append"); len(v) != 1 || v[0] != "first,second" {
			t.Errorf("x-append %v, want one value first,second (comma-joined)", v)
		}
		if v := up.header.Get("x-append-absent"); v != "" {
			t.Errorf("append true added an absent header: %q", v)
		}
		if up.header.Get("x-remove-me") != "" {
			t.Error("x-remove-me was not removed")
		}
		if !strings.HasPrefix(up.uri, "/p?") || up.host == "" {
			t.Errorf("pseudo-headers or host removed: uri %q host %q", up.uri, up.host)
		}
		if up.uri != "/p?keep=2&odd=%zz&set=1&sig=a%2Bb%2Fc%3D" {
			t.Errorf("query %q: want keep=2 and odd=%%zz untouched, set=1 overwriting, sig as given, no drop", up.uri)
		}
		if resp.Header.Get("x-to-client") != "hi" {
			t.Errorf("response_headers_to_add not on the response: %v", resp.Header)
		}
	})
}

// DeniedHttpResponse: its status (403 when unset), headers and body reach
// the client; the upstream is never called.
// Mirrors (docs/envoy-references.md): row 4; HttpFilterTestParam.DeniedResponseWith401.
func TestExtAuthzDeniedResponse(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, setup{authz: authzConfig()})
		for _, tc := range []struct {
			status typev3.StatusCode
			want   int
		}{{typev3.StatusCode_Unauthorized, 401}, {0, 403}} {
			h.authz.check = func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{
					Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)},
					HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
						Status:  &typev3.HttpStatus{Code: tc.status},
						Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "content-type", Value: "application/json"}}, {Header: &corev3.HeaderValue{Key: "x-why", Value: "policy"}}},
						Body:    `{"error":"forbidden"}`,
					}},
				}, nil
			}
			resp, body := h.get("/secret")
			wantStatus(t, resp, body, tc.want)
			if body != `{"error":"forbidden"}` || resp.Header.Get("x-why") != "policy" || resp.Header.Get("content-type") != "application/json" {
				t.Fatalf("denied reply: headers %v body %q", resp.Header, body)
			}
			if resp.Header.Get("server") != "envoy" {
				t.Errorf("server %q on a local reply, want envoy (server_header_transformation OVERWRITE)", resp.Header.Get("server"))
			}
		}
		if h.upstream.count() != 0 {
			t.Fatal("a denied request reached the upstream")
		}
	})
}

// grpc_service.timeout and status_on_error: a Check slower than the timeout
// is an error, answered with status_on_error (403 by default).
// Mirrors (docs/envoy-references.md): row 5; HttpFilterTest.ErrorFailClose, HttpFilterTest.ErrorCustomStatusCode.
func TestExtAuthzTimeoutUsesStatusOnError(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		for _, tc := range []struct {
			name   string
			status *typev3.HttpStatus
			want   int
		}{{"default 403", nil, 403}, {"configured 503", &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}, 503}} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := authzConfig()
				cfg.GetGrpcService().Timeout = durationpbMS(50)
				cfg.StatusOnError = tc.status
				h := p.start(t, setup{authz: cfg})
				h.authz.check = func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
					// Answer allow well after the timeout, whatever the
					// propagated deadline says: only the client's timeout
					// may decide.
					time.Sleep(500 * time.Millisecond)
					return allow(), nil
				}
				resp, body := h.get("/x")
				wantStatus(t, resp, body, tc.want)
				if h.upstream.count() != 0 {
					t.Fatal("forwarded after an authorization timeout")
				}
			})
		}
	})
}

// status_on_error also covers a gRPC error from the service.
// Mirrors (docs/envoy-references.md): row 5; HttpFilterTest.ErrorFailClose.
func TestExtAuthzRPCErrorUsesStatusOnError(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, setup{authz: authzConfig()})
		h.authz.check = func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return nil, errors.New("policy engine down")
		}
		resp, body := h.get("/x")
		wantStatus(t, resp, body, 403)
		if h.upstream.count() != 0 {
			t.Fatal("forwarded after an authorization error")
		}
	})
}

// ExtAuthz.failure_mode_allow: an error lets the request through.
// Mirrors (docs/envoy-references.md): row 5; HttpFilterTest.ErrorOpen.
func TestExtAuthzFailureModeAllow(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		cfg := authzConfig()
		cfg.FailureModeAllow = true
		h := p.start(t, setup{authz: cfg})
		h.authz.check = func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return nil, errors.New("down")
		}
		resp, body := h.get("/x")
		wantStatus(t, resp, body, 200)
	})
}

// CheckResponse.dynamic_metadata is stored under the filter's namespace,
// envoy.filters.http.ext_authz, where ext_proc's forwarding_namespaces read it;
// an allowing answer's metadata gains ext_authz_duration, the call's
// duration in milliseconds (ext_authz.cc onComplete).
// Mirrors (docs/envoy-references.md): rows 4, 18; ExtProcIntegrationTest.SendAndReceiveDynamicMetadata.
func TestExtAuthzDynamicMetadataReachesExtProc(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		proc := procConfig(nil)
		proc.MetadataOptions = forwarding("envoy.filters.http.ext_authz")
		h := p.start(t, setup{authz: authzConfig(), proc: proc})
		h.authz.check = func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			r := allow()
			r.DynamicMetadata, _ = structpb.NewStruct(map[string]any{"request_id": "r-1"})
			return r, nil
		}
		resp, body := h.get("/x")
		wantStatus(t, resp, body, 200)
		msgs := h.proc.messages(0)
		if len(msgs) == 0 {
			t.Fatal("ext_proc got nothing")
		}
		md := msgs[0].GetMetadataContext().GetFilterMetadata()["envoy.filters.http.ext_authz"]
		if md.GetFields()["request_id"].GetStringValue() != "r-1" {
			t.Fatalf("forwarded metadata %v", msgs[0].GetMetadataContext())
		}
		if _, ok := md.GetFields()["ext_authz_duration"].GetKind().(*structpb.Value_NumberValue); !ok {
			t.Fatalf("ext_authz_duration missing or not a number: %v", md)
		}
	})
}

// Filters disabled per route (ExtAuthzPerRoute.disabled) are not called.
// Mirrors (docs/envoy-references.md): row 27; HttpFilterTestParam.DisabledOnRoute.
func TestExtAuthzDisabledPerRoute(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, setup{authz: authzConfig(), route: func(r *routeT) {
			r.TypedPerFilterConfig["envoy.filters.http.ext_authz"] = mustAny(t, &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})
		}})
		h.authz.check = func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return nil, errors.New("must not be called")
		}
		resp, body := h.get("/x")
		wantStatus(t, resp, body, 200)
		if h.authz.calls() != 0 {
			t.Fatal("ext_authz ran on a route that disables it")
		}
	})
}

// The catch-all route's direct_response answers locally, and
// local_reply_config renders it.
// Mirrors (docs/envoy-references.md): row 24; LocalReplyIntegrationTest.MapStatusCodeAndFormatToJson.
func TestConnectionManagerLocalReplyRendersJSON(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		body, _ := structpb.NewStruct(map[string]any{"error": "not_found", "request_id": "%REQ(X-REQUEST-ID)%", "missing": "%REQ(X-NOPE)%", "limit": 7.0})
		h := p.start(t, setup{
			hcm: func(m *hcmv3.HttpConnectionManager) {
				m.LocalReplyConfig = &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{
					Filter:             statusFilter(404),
					StatusCode:         wrapperspb.UInt32(410),
					BodyFormatOverride: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body}},
					HeadersToAdd:       []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-rid", Value: "%REQ(X-REQUEST-ID)%"}}},
				}}}
			},
			route: func(r *routeT) {
				r.Action = directResponse(404, "plain")
			},
		})
		resp, got := h.get("/x", "x-request-id", "rid-9")
		wantStatus(t, resp, got, 410)
		var m map[string]any
		if err := json.Unmarshal([]byte(got), &m); err != nil {
			t.Fatalf("body %q: %v", got, err)
		}
		if m["error"] != "not_found" || m["request_id"] != "rid-9" || m["missing"] != nil || m["limit"] != 7.0 {
			t.Fatalf("rendered %v", m)
		}
		if resp.Header.Get("content-type") != "application/json" || resp.Header.Get("x-rid") != "rid-9" {
			t.Fatalf("headers %v", resp.Header)
		}
	})
}

// Denials go through local_reply_config, and a denial's dynamic_metadata is
// stored before the mappers run, so a metadata_filter can keep an
// authorization service's own body while Envoy's replies are rewritten.
// Mirrors (docs/envoy-references.md): rows 4, 24; ExtAuthzLocalReplyIntegrationTest.DeniedHeaderTest.
func TestLocalReplyMetadataFilterSkipsMarkedDenials(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		body, _ := structpb.NewStruct(map[string]any{"rewritten": true})
		h := p.start(t, setup{authz: authzConfig(), hcm: func(m *hcmv3.HttpConnectionManager) {
			m.LocalReplyConfig = &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{
				Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_AndFilter{AndFilter: &accesslogv3.AndFilter{
					Filters: []*accesslogv3.AccessLogFilter{statusFilter(403), {FilterSpecifier: &accesslogv3.AccessLogFilter_MetadataFilter{
						MetadataFilter: &accesslogv3.MetadataFilter{
							Matcher: &matcherv3.MetadataMatcher{Filter: "envoy.filters.http.ext_authz",
								Path:  []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "mine"}}},
								Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_BoolMatch{BoolMatch: false}}},
							MatchIfKeyNotFound: wrapperspb.Bool(true),
						}}},
					}}}},
				BodyFormatOverride: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body}},
			}}}
		}})
		for _, mine := range []bool{true, false} {
			h.authz.check = func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				md, _ := structpb.NewStruct(map[string]any{"mine": mine})
				return &authv3.CheckResponse{
					Status:          &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)},
					HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Body: "own body"}},
					DynamicMetadata: md,
				}, nil
			}
			resp, got := h.get("/x")
			wantStatus(t, resp, got, 403)
			if mine && got != "own body" {
				t.Fatalf("a denial marked as the service's own was rewritten: %q", got)
			}
			if !mine && !strings.Contains(got, "rewritten") {
				t.Fatalf("an unmarked denial was not rewritten: %q", got)
			}
		}
	})
}
