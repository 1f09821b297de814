package dataplane

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// A request head as Envoy 1.40's HTTP/1 codec reads it: Balsa's parsing with
// the checks Envoy's codec adds (balsa_parser.cc, codec_impl.cc), in their
// order, and the refusals with the details Envoy gives them. Where the
// sources and real Envoy disagreed, real Envoy decided
// (codec_conformance_test.go).

// codecError is a request the codec refuses, with the local reply Envoy
// makes of it.
type codecError struct {
	status  int
	body    string
	details string
	// filtered: the reply passes the filters' encoder side like any local
	// reply (request_headers_timeout's 408). Otherwise the reply comes from
	// a codec error, which, with ext_proc processing responses, closes the
	// connection without a reply.
	filtered bool
}

func refuse(status int, details string) *codecError {
	return &codecError{status: status, body: http.StatusText(status), details: details}
}

// codecError's details, as Envoy names them.
const (
	detailsCodecError       = "http1.codec_error"
	detailsInvalidChars     = "http1.invalid_characters"
	detailsInvalidURL       = "http1.invalid_url"
	detailsInvalidTE        = "http1.invalid_transfer_encoding"
	detailsLengthAndTE      = "http1.content_length_and_chunked_not_allowed"
	detailsBodyDisallowed   = "http1.body_disallowed"
	detailsInvalidScheme    = "http1.invalid_scheme"
	detailsHTTPSOnPlain     = "http1.https_url_on_plaintext_connection"
	detailsHeadersTooLarge  = "http1.headers_too_large"
	detailsTooManyHeaders   = "http1.too_many_headers"
	detailsUnderscore       = "http1.unexpected_underscore"
	detailsInvalidAuthority = "http.invalid_authority"
	detailsLowVersion       = "low_version"
)

// requestHead is one request head as Envoy's codec reads it.
type requestHead struct {
	method string
	// path is :path (origin-form, "*…" for OPTIONS, or the path of an
	// absolute-form target); "" for CONNECT.
	path string
	// authority is :authority: the Host headers joined with ",", or the
	// host of an absolute-form or CONNECT target.
	authority string
	hasHost   bool
	// header is every header but Host, values trimmed, keys canonical.
	header http.Header
	// length is the content-length, -1 for a chunked body.
	length int64
	// connect: a CONNECT request; upgrade: Connection: upgrade with an
	// Upgrade header (other than h2c, which the codec strips).
	connect, upgrade bool
	// expectContinue: Expect: 100-continue, which Envoy answers itself.
	expectContinue bool
	// close: the client asked for the connection to close after this
	// request.
	close bool
	err   *codecError
	// bodyErr: the chunked body that came with the head is already known
	// to be malformed. Envoy parses what it has read at once, so such a
	// request is refused as soon as its headers are decoded, before any
	// filter is done with it.
	bodyErr *codecError
}

// envoyMethods are the methods Envoy's HTTP/1 codec accepts
// (balsa_parser.cc isMethodValid).
var envoyMethods = map[string]bool{
	"ACL": true, "BIND": true, "CHECKOUT": true, "CONNECT": true, "COPY": true, "DELETE": true, "GET": true,
	"HEAD": true, "LINK": true, "LOCK": true, "MERGE": true, "MKACTIVITY": true, "MKCALENDAR": true, "MKCOL": true,
	"MOVE": true, "MSEARCH": true, "NOTIFY": true, "OPTIONS": true, "PATCH": true, "POST": true, "PROPFIND": true,
	"PROPPATCH": true, "PURGE": true, "PUT": true, "REBIND": true, "REPORT": true, "SEARCH": true, "SOURCE": true,
	"SUBSCRIBE": true, "TRACE": true, "UNBIND": true, "UNLINK": true, "UNLOCK": true, "UNSUBSCRIBE": true,
}

// invalidHeadByte: control characters other than HT, LF and CR, and DEL,
// refused anywhere in a head (Balsa's invalid header characters).
func invalidHeadByte(b byte) bool {
	return (b < ' ' && b != '\t' && b != '\n' && b != '\r') || b == 0x7f
}

func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

// urlValid is Envoy's check of a request target (balsa_parser.cc
// isUrlValid, after http-parser).
func urlValid(url string, connect bool) bool {
	if url == "" {
		return false
	}
	pathChar := func(c byte) bool { return c == 9 || c == 12 || ('!' <= c && c <= 126) }
	allPath := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if !pathChar(s[i]) {
				return false
			}
		}
		return true
	}
	if url[0] == '/' || url[0] == '*' {
		return allPath(url[1:])
	}
	if !connect {
		i := 0
		for i < len(url) && ('a' <= url[i]|0x20 && url[i]|0x20 <= 'z') {
			i++
		}
		if i == 0 || !strings.HasPrefix(url[i:], "://") {
			return false
		}
		url = url[i+3:]
	}
	end := strings.IndexAny(url, "/?")
	if end < 0 {
		end = len(url)
	}
	host := url[:end]
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!$%&'()*+,-.:;=@[]_~", c) >= 0) {
			return false
		}
	}
	return !strings.Contains(host, "@@") && allPath(url[end:])
}

// authorityValid: the characters an :authority may hold
// (HeaderUtility::authorityIsValid).
func authorityValid(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!$&'()*+,-.:;=@[]_~%", c) >= 0) {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds tok (ASCII
// case-insensitive).
func hasToken(v, tok string) bool {
	for _, t := range strings.Split(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

type headerField struct{ name, value string }

// parseRequestHead parses one head (from its request line through the
// blank line) as Envoy's codec does, in Envoy's order of checks.
func parseRequestHead(raw []byte, lim *hcmConfig) *requestHead {
	fail := func(e *codecError) *requestHead { return &requestHead{err: e} }
	for _, b := range raw {
		if invalidHeadByte(b) {
			return fail(refuse(http.StatusBadRequest, detailsInvalidChars))
		}
	}
	lines := strings.Split(string(raw), "\n")
	lines = lines[:len(lines)-2] // the blank line and what follows its LF
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}

	// The request line: method, target, version, one space or more apart.
	first := lines[0]
	if first == "" || first[0] == ' ' || strings.ContainsAny(first, "\r\t") {
		return fail(refuse(http.StatusBadRequest, detailsCodecError))
	}
	var parts []string
	for _, f := range strings.Split(first, " ") {
		if f != "" {
			parts = append(parts, f)
		}
	}
	if len(parts) < 2 || len(parts) > 3 {
		return fail(refuse(http.StatusBadRequest, detailsCodecError))
	}
	method, target := parts[0], parts[1]
	connect := method == http.MethodConnect
	if !envoyMethods[method] || !urlValid(target, connect) {
		return fail(refuse(http.StatusBadRequest, detailsCodecError))
	}
	http11 := false
	if len(parts) == 3 {
		v := parts[2]
		switch {
		case v == "HTTP/1.1":
			http11 = true
		case len(v) == 8 && strings.HasPrefix(v, "HTTP/") && '0' <= v[5] && v[5] <= '9' && v[6] == '.' && '0' <= v[7] && v[7] <= '9':
		default:
			return fail(refuse(http.StatusBadRequest, detailsCodecError))
		}
	}

	// Header lines; a line starting with whitespace continues the one
	// before (obs-fold: the line break goes, the whitespace stays).
	var fields []headerField
	for _, l := range lines[1:] {
		if l[0] == ' ' || l[0] == '\t' {
			if len(fields) == 0 {
				return fail(refuse(http.StatusBadRequest, detailsCodecError))
			}
			fields[len(fields)-1].value += l
			continue
		}
		colon := strings.IndexByte(l, ':')
		if colon < 0 || !isToken(l[:colon]) {
			return fail(refuse(http.StatusBadRequest, detailsCodecError))
		}
		fields = append(fields, headerField{name: l[:colon], value: l[colon+1:]})
	}
	count := 0
	sawHost := false
	for i := range fields {
		f := &fields[i]
		// A lone CR inside a value is dropped; whitespace around goes.
		f.value = strings.Trim(strings.ReplaceAll(f.value, "\r", ""), " \t")
		if lim.rejectUnderscores && strings.IndexByte(f.name, '_') >= 0 {
			return fail(refuse(http.StatusBadRequest, detailsUnderscore))
		}
		if strings.EqualFold(f.name, "host") {
			if sawHost {
				continue // appended to the first: no new header
			}
			sawHost = true
		}
		if count++; count > maxHeadersCount {
			return fail(refuse(http.StatusRequestHeaderFieldsTooLarge, detailsTooManyHeaders))
		}
	}

	h := &requestHead{method: method, header: http.Header{}, length: 0, connect: connect}
	var hosts, lengths, encodings []string
	for _, f := range fields {
		switch strings.ToLower(f.name) {
		case "host":
			hosts = append(hosts, f.value)
			continue
		case "content-length":
			lengths = append(lengths, f.value)
		case "transfer-encoding":
			encodings = append(encodings, f.value)
		}
		k := textproto.CanonicalMIMEHeaderKey(f.name)
		h.header[k] = append(h.header[k], f.value)
	}

	// Framing.
	if len(lengths) > 1 {
		return fail(refuse(http.StatusBadRequest, detailsCodecError))
	}
	if len(lengths) == 1 {
		n, err := strconv.ParseUint(lengths[0], 10, 64)
		if err != nil || n > 1<<62 {
			return fail(refuse(http.StatusBadRequest, detailsCodecError))
		}
		h.length = int64(n)
	}
	if len(lengths) > 0 && len(encodings) > 0 {
		return fail(refuse(http.StatusBadRequest, detailsLengthAndTE))
	}
	if len(encodings) > 0 {
		if !strings.EqualFold(strings.Join(encodings, ","), "chunked") || connect {
			return fail(refuse(http.StatusNotImplemented, detailsInvalidTE))
		}
		h.length = -1
	}
	if connect && len(lengths) > 0 {
		if lengths[0] != "0" {
			return fail(refuse(http.StatusBadRequest, detailsBodyDisallowed))
		}
		h.header.Del("Content-Length")
	}

	// The target: origin-form, OPTIONS' asterisk, absolute-form (whose
	// host replaces Host) or CONNECT's authority-form.
	switch {
	case !connect && target[0] == '/':
		h.path = target
	case method == http.MethodOptions && target[0] == '*':
		h.path = target
	default:
		host, path, e := splitAbsoluteTarget(target, connect)
		if e != nil {
			return fail(e)
		}
		h.authority, h.path, h.hasHost = host, path, true
	}
	if !h.hasHost && len(hosts) > 0 {
		h.hasHost = true
		var joined []string
		for _, v := range hosts {
			if v != "" {
				joined = append(joined, v)
			}
		}
		h.authority = strings.Join(joined, ",")
	}
	if !authorityValid(h.authority) {
		return fail(refuse(http.StatusBadRequest, detailsInvalidAuthority))
	}

	// Connection management.
	conn := strings.Join(h.header.Values("Connection"), ",")
	if _, ok := h.header["Upgrade"]; ok && hasToken(conn, "upgrade") {
		if strings.EqualFold(h.header.Get("Upgrade"), "h2c") {
			// Envoy does not do h2c upgrades and strips them.
			h.header.Del("Upgrade")
			h.header.Del("Http2-Settings")
			var keep []string
			for _, t := range strings.Split(conn, ",") {
				if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, "upgrade") && !strings.EqualFold(t, "http2-settings") {
					keep = append(keep, t)
				}
			}
			if len(keep) == 0 {
				h.header.Del("Connection")
			} else {
				h.header.Set("Connection", strings.Join(keep, ","))
			}
		} else {
			h.upgrade = true
		}
	}
	h.close = hasToken(conn, "close") || strings.EqualFold(h.header.Get("Proxy-Connection"), "close")
	if !http11 {
		// HTTP/1.0, 0.9 or any version but 1.1 (accept_http_10 false).
		return fail(refuse(http.StatusUpgradeRequired, detailsLowVersion))
	}
	if strings.EqualFold(strings.Join(h.header.Values("Expect"), ","), "100-continue") {
		h.expectContinue = true
		h.header.Del("Expect")
	}
	return h
}

// splitAbsoluteTarget splits an absolute-form target into the authority
// and :path, or checks CONNECT's authority-form (host:port).
func splitAbsoluteTarget(target string, connect bool) (authority, path string, e *codecError) {
	if connect {
		i := strings.LastIndexByte(target, ':')
		if i <= 0 || strings.ContainsAny(target, "/?") || (target[0] == '[' && target[i-1] != ']') {
			return "", "", refuse(http.StatusBadRequest, detailsInvalidURL)
		}
		if p, err := strconv.Atoi(target[i+1:]); err != nil || p < 0 || p > 65535 {
			return "", "", refuse(http.StatusBadRequest, detailsInvalidURL)
		}
		return target, "", nil
	}
	i := strings.Index(target, "://")
	if i <= 0 {
		return "", "", refuse(http.StatusBadRequest, detailsInvalidURL)
	}
	scheme, rest := strings.ToLower(target[:i]), target[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host, path := rest[:end], rest[end:]
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		host = host[at+1:]
	}
	if host == "" {
		return "", "", refuse(http.StatusBadRequest, detailsInvalidURL)
	}
	switch scheme {
	case "http":
	case "https":
		return "", "", refuse(http.StatusForbidden, detailsHTTPSOnPlain)
	default:
		return "", "", refuse(http.StatusBadRequest, detailsInvalidScheme)
	}
	if path == "" {
		path = "/"
	}
	return host, path, nil
}
