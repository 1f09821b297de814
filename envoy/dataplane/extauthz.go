package dataplane

//lint:file-ignore SA1019 Envoy still reads the deprecated append and text_format fields; so must its stand-in.

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// extAuthz runs the ext_authz filter. It returns false when it answered the
// request itself (denied, or an error without failure_mode_allow).
func (st *stream) extAuthz(cfg *extAuthzConfig) bool {
	var body []byte
	partial := false
	withBody := cfg.withBody
	if st.route != nil && st.route.withBody != nil {
		withBody = st.route.withBody
	}
	if b := withBody; b != nil && st.hasBody() {
		buf, rest, over, err := readUpTo(st.body, b.maxBytes)
		if err != nil {
			st.bodyReadFailed()
			return false
		}
		if over && !b.allowPartial {
			st.localReply(http.StatusRequestEntityTooLarge, "Payload Too Large", "request_payload_too_large", "", nil)
			return false
		}
		body, partial = buf, over
		if over {
			st.body = io.MultiReader(bytes.NewReader(buf), rest)
		} else {
			st.body = bytes.NewReader(buf)
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
	// A replaced cluster resets the call, as Envoy's async client does.
	defer context.AfterFunc(up.streams, cancel)()
	req := st.checkRequest()
	hr := req.GetAttributes().GetRequest().GetHttp()
	// A client cannot claim a partial body (check_request_utils.cc).
	delete(hr.Headers, "x-envoy-auth-partial-body")
	if withBody != nil && body != nil {
		// The header exists only in the CheckRequest, never upstream.
		hr.Headers["x-envoy-auth-partial-body"] = strconv.FormatBool(partial)
		hr.Size = int64(len(body))
		if withBody.packAsBytes {
			hr.RawBody = body
		} else {
			// Envoy sanitises the string to UTF-8 too (sanitizeUtf8String);
			// the replacement character may differ (docs/dataplane.md).
			hr.Body = strings.ToValidUTF8(string(body), "!")
		}
	}
	started := time.Now()
	resp, err := authv3.NewAuthorizationClient(up.grpc).Check(ctx, req)
	if err != nil {
		if st.ctx.Err() != nil {
			// The stream idle timeout, not the service, ended the call.
			st.idleReply()
			return false
		}
		st.dp.log.Debug("ext_authz call failed", "error", err)
		return st.authzError(cfg)
	}
	// dynamic_metadata lands under the filter's namespace, allowed or
	// denied; an allowing answer's gets the call's duration in milliseconds
	// (ext_authz.cc onComplete).
	if md := resp.GetDynamicMetadata(); len(md.GetFields()) > 0 {
		if code.Code(resp.GetStatus().GetCode()) == code.Code_OK {
			md.Fields["ext_authz_duration"] = structpb.NewNumberValue(float64(time.Since(started).Milliseconds()))
		}
		st.mdMu.Lock()
		st.metadata[extAuthzName] = md
		st.mdMu.Unlock()
	}
	if code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		d := resp.GetDeniedResponse()
		status := int(d.GetStatus().GetCode())
		if status < 100 || status > 511 {
			status = http.StatusForbidden // Envoy's toErrorCode
		}
		st.localReply(status, d.GetBody(), "ext_authz_denied", "UAEX", func(h http.Header) {
			// Every named header is removed first, then each is added, so
			// repeated headers (set-cookie) all survive (ext_authz.cc).
			for _, o := range d.GetHeaders() {
				h.Del(o.GetHeader().GetKey())
			}
			for _, o := range d.GetHeaders() {
				h.Add(o.GetHeader().GetKey(), headerValue(o.GetHeader()))
			}
		})
		return false
	}
	ok := resp.GetOkResponse()
	for _, o := range ok.GetHeaders() {
		st.applyAuthzHeader(o)
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
	st.authzResponseHeaders = ok.GetResponseHeadersToAdd()
	st.authzRan = true
	return true
}

// applyAuthzHeader applies one OkHttpResponse.headers entry as Envoy 1.36's
// gRPC client maps it: append unset or false overwrites; append true joins
// the value onto an existing header with "," and adds nothing when the
// header is absent; append_action is not read. Without
// decoder_header_mutation_rules even :authority and :path may be set.
func (st *stream) applyAuthzHeader(o *corev3.HeaderValueOption) {
	k := strings.ToLower(o.GetHeader().GetKey())
	v := headerValue(o.GetHeader())
	appendValue := o.GetAppend().GetValue()
	switch k {
	case ":authority", "host":
		if appendValue {
			v = st.r.Host + "," + v
		}
		st.r.Host = v
		return
	case ":path":
		if !appendValue {
			st.path = v
		}
		return
	}
	if strings.HasPrefix(k, ":") {
		return
	}
	if appendValue {
		if old := st.r.Header.Values(k); len(old) > 0 {
			st.r.Header.Set(k, strings.Join(old, ",")+","+v)
		}
		return
	}
	st.r.Header.Set(k, v)
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
		Source:            &authv3.AttributeContext_Peer{Address: socketAddress(st.remote), Principal: st.peer},
		Destination:       &authv3.AttributeContext_Peer{Address: socketAddress(st.local)},
		ContextExtensions: ext,
		// Envoy always sends both, empty when there is no metadata.
		MetadataContext:      &corev3.Metadata{},
		RouteMetadataContext: &corev3.Metadata{},
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
				Size:     0, // bytes received when the check starts: none without with_request_body
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

// mutateQuery applies query_parameters_to_remove and _set to :path. Only the
// named keys change; other parameters keep their order and bytes, even
// ones that do not parse.
func (st *stream) mutateQuery(ok *authv3.OkHttpResponse) {
	p, q := st.path, ""
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p, q = p[:i], p[i+1:]
	}
	var params []string
	if q != "" {
		params = strings.Split(q, "&")
	}
	// Envoy parses the query without decoding it (parseQueryString) and
	// writes what it sets as given: keys compare as sent, and a value is
	// expected URL-encoded already (queryParameterIsUrlEncoded).
	keyOf := func(param string) string {
		k, _, _ := strings.Cut(param, "=")
		return k
	}
	drop := map[string]bool{}
	for _, k := range ok.GetQueryParametersToRemove() {
		drop[k] = true
	}
	for _, kv := range ok.GetQueryParametersToSet() {
		drop[kv.GetKey()] = true // a set overwrites every value of its key
	}
	kept := params[:0]
	for _, param := range params {
		if !drop[keyOf(param)] {
			kept = append(kept, param)
		}
	}
	for _, kv := range ok.GetQueryParametersToSet() {
		kept = append(kept, kv.GetKey()+"="+kv.GetValue())
	}
	if len(kept) > 0 {
		st.path = p + "?" + strings.Join(kept, "&")
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
