package dataplane

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// extAuthz runs the ext_authz filter. It returns false when it answered the
// request itself (denied, or an error without failure_mode_allow).
func (st *stream) extAuthz(cfg *extAuthzConfig) bool {
	var body []byte
	if b := cfg.withBody; b != nil && st.hasBody() {
		buf, rest, over, err := readUpTo(st.body, b.maxBytes)
		if err != nil {
			st.localReply(http.StatusBadRequest, "", "downstream_remote_disconnect", "", nil)
			return false
		}
		if over && !b.allowPartial {
			st.localReply(http.StatusRequestEntityTooLarge, "", "request_payload_too_large", "", nil)
			return false
		}
		body = buf
		if over {
			st.body = io.MultiReader(bytes.NewReader(buf), rest)
			// The check saw only a prefix; the header tells both the
			// authorization service and the upstream.
			st.r.Header.Set("x-envoy-auth-partial-body", "true")
		} else {
			st.body = bytes.NewReader(buf)
			st.r.Header.Set("x-envoy-auth-partial-body", "false")
		}
	}
	up := st.cfg.upstreams[cfg.cluster]
	if up == nil || up.grpc == nil {
		return st.authzError(cfg)
	}
	if err := up.acquire(); err != nil {
		return st.authzError(cfg)
	}
	defer up.release()
	ctx, cancel := context.WithTimeout(st.ctx, cfg.timeout)
	defer cancel()
	req := st.checkRequest()
	if cfg.withBody != nil && body != nil {
		hr := req.GetAttributes().GetRequest().GetHttp()
		if cfg.withBody.packAsBytes {
			hr.RawBody = body
		} else {
			// A proto3 string must be UTF-8 for Go's marshaller; Envoy's
			// C++ sends the bytes as they are (docs/dataplane.md).
			hr.Body = strings.ToValidUTF8(string(body), "\uFFFD")
		}
	}
	resp, err := authv3.NewAuthorizationClient(up.grpc).Check(ctx, req)
	if err != nil {
		st.dp.log.Debug("ext_authz call failed", "error", err)
		return st.authzError(cfg)
	}
	// dynamic_metadata lands under the filter's namespace, allowed or denied.
	if md := resp.GetDynamicMetadata(); md != nil {
		st.metadata[extAuthzName] = md
	}
	if code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		d := resp.GetDeniedResponse()
		status := int(d.GetStatus().GetCode())
		if status == 0 {
			status = http.StatusForbidden
		}
		st.localReply(status, d.GetBody(), "ext_authz_denied", "UAEX", func(h http.Header) {
			for _, o := range d.GetHeaders() {
				applyOption(h, o, false)
			}
		})
		return false
	}
	ok := resp.GetOkResponse()
	for _, o := range ok.GetHeaders() {
		k := strings.ToLower(o.GetHeader().GetKey())
		if k == "host" || k == ":authority" {
			st.r.Host = headerValue(o.GetHeader())
			continue
		}
		if strings.HasPrefix(k, ":") {
			continue
		}
		applyOption(st.r.Header, o, false)
	}
	for _, k := range ok.GetHeadersToRemove() {
		k = strings.ToLower(k)
		// Pseudo-headers and host are never removed (OkHttpResponse.headers_to_remove).
		if strings.HasPrefix(k, ":") || k == "host" {
			continue
		}
		st.r.Header.Del(k)
	}
	if len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
		st.mutateQuery(ok)
	}
	for _, o := range ok.GetResponseHeadersToAdd() {
		st.authzResponseHeaders = append(st.authzResponseHeaders, headerOp{
			key: strings.ToLower(o.GetHeader().GetKey()), value: headerValue(o.GetHeader()), overwrite: overwrites(o, false),
		})
	}
	st.authzRan = true
	return true
}

// authzError applies status_on_error, or lets the request through with
// failure_mode_allow.
func (st *stream) authzError(cfg *extAuthzConfig) bool {
	if cfg.failureModeAllow {
		st.authzRan = true
		return true
	}
	st.localReply(cfg.statusOnError, "", "ext_authz_error", "UAEX", nil)
	return false
}

func (st *stream) checkRequest() *authv3.CheckRequest {
	headers := map[string]string{
		":method":    st.r.Method,
		":path":      st.path,
		":authority": st.r.Host,
		":scheme":    "http",
	}
	for k, vs := range st.r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	var ext map[string]string
	if st.route != nil {
		ext = st.route.contextExt
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: socketAddress(st.remote)},
		Destination:       &authv3.AttributeContext_Peer{Address: socketAddress(st.local)},
		ContextExtensions: ext,
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       strconv.FormatUint(st.id, 10),
				Method:   st.r.Method,
				Headers:  headers,
				Path:     st.path,
				Host:     st.r.Host,
				Scheme:   "http",
				Protocol: st.r.Proto,
				Size:     st.r.ContentLength,
			},
		},
	}}
}

func socketAddress(hostport string) *corev3.Address {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	p, _ := strconv.Atoi(port)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

func (st *stream) mutateQuery(ok *authv3.OkHttpResponse) {
	p, q := st.path, ""
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p, q = p[:i], p[i+1:]
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		vals = url.Values{}
	}
	for _, k := range ok.GetQueryParametersToRemove() {
		vals.Del(k)
	}
	for _, kv := range ok.GetQueryParametersToSet() {
		vals.Set(kv.GetKey(), kv.GetValue())
	}
	if enc := vals.Encode(); enc != "" {
		st.path = p + "?" + enc
	} else {
		st.path = p
	}
}

func headerValue(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

// overwrites reports whether a HeaderValueOption replaces existing values:
// the deprecated append field wins when set, else append_action, and
// defaultAppend is the message's documented default.
func overwrites(o *corev3.HeaderValueOption, defaultAppend bool) bool {
	if o.GetAppend() != nil {
		return !o.GetAppend().GetValue()
	}
	switch o.GetAppendAction() {
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		return true
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		return false
	}
	return !defaultAppend
}

func applyOption(h http.Header, o *corev3.HeaderValueOption, defaultAppend bool) {
	k := strings.ToLower(o.GetHeader().GetKey())
	v := headerValue(o.GetHeader())
	switch {
	case o.GetAppend() == nil && o.GetAppendAction() == corev3.HeaderValueOption_ADD_IF_ABSENT:
		if h.Get(k) == "" {
			h.Set(k, v)
		}
	case o.GetAppend() == nil && o.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if h.Get(k) != "" {
			h.Set(k, v)
		}
	case overwrites(o, defaultAppend):
		h.Set(k, v)
	default:
		h.Add(k, v)
	}
}
