package dataplane

//lint:file-ignore SA1019 Envoy still reads the deprecated append and text_format fields; so must its stand-in.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// localReplyConfig rewrites the replies the data plane produces itself, as
// Envoy's connection manager local_reply_config does: the first mapper whose
// filter matches may change the status, add headers and replace the body
// format.
type localReplyConfig struct {
	mappers []*replyMapper
	format  *bodyFormat // the default body_format, nil for plain text
}

type replyMapper struct {
	filter     replyFilter
	newStatus  int
	body       *string
	format     *bodyFormat
	headersAdd []headerTemplate
}

// replyFilter is the subset of Envoy's AccessLogFilter the data plane
// evaluates for local_reply_config: status_code_filter, and_filter,
// or_filter and metadata_filter.
type replyFilter interface {
	matches(c *replyContext) bool
}

type statusMatch struct {
	op    accesslogv3.ComparisonFilter_Op
	value int
}

func (m statusMatch) matches(c *replyContext) bool {
	switch m.op {
	case accesslogv3.ComparisonFilter_EQ:
		return c.code == m.value
	case accesslogv3.ComparisonFilter_GE:
		return c.code >= m.value
	case accesslogv3.ComparisonFilter_LE:
		return c.code <= m.value
	}
	return false
}

type allOf []replyFilter

func (a allOf) matches(c *replyContext) bool {
	for _, f := range a {
		if !f.matches(c) {
			return false
		}
	}
	return true
}

type anyOf []replyFilter

func (a anyOf) matches(c *replyContext) bool {
	for _, f := range a {
		if f.matches(c) {
			return true
		}
	}
	return false
}

// metadataMatch is a MetadataFilter: the value at namespace/path of the
// stream's dynamic metadata against a value matcher; a missing key gives
// match_if_key_not_found (true when unset).
type metadataMatch struct {
	namespace  string
	path       []string
	value      *matcherv3.ValueMatcher
	ifNotFound bool
}

func (m metadataMatch) matches(c *replyContext) bool {
	if c.metadata == nil {
		return m.ifNotFound
	}
	v := c.metadata(m.namespace, m.path)
	if v == nil {
		return m.ifNotFound
	}
	switch p := m.value.GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_PresentMatch:
		return p.PresentMatch
	case *matcherv3.ValueMatcher_BoolMatch:
		b, ok := v.GetKind().(*structpb.Value_BoolValue)
		return ok && b.BoolValue == p.BoolMatch
	case *matcherv3.ValueMatcher_StringMatch:
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		return ok && p.StringMatch.GetExact() == sv.StringValue
	}
	return false
}

func translateFilter(f *accesslogv3.AccessLogFilter) (replyFilter, error) {
	if err := onlyFields(f, "status_code_filter", "and_filter", "or_filter", "metadata_filter"); err != nil {
		return nil, err
	}
	switch x := f.GetFilterSpecifier().(type) {
	case *accesslogv3.AccessLogFilter_StatusCodeFilter:
		cmp := x.StatusCodeFilter.GetComparison()
		return statusMatch{op: cmp.GetOp(), value: int(cmp.GetValue().GetDefaultValue())}, nil
	case *accesslogv3.AccessLogFilter_AndFilter, *accesslogv3.AccessLogFilter_OrFilter:
		var subs []*accesslogv3.AccessLogFilter
		if a, ok := x.(*accesslogv3.AccessLogFilter_AndFilter); ok {
			subs = a.AndFilter.GetFilters()
		} else {
			subs = x.(*accesslogv3.AccessLogFilter_OrFilter).OrFilter.GetFilters()
		}
		var out []replyFilter
		for _, s := range subs {
			rf, err := translateFilter(s)
			if err != nil {
				return nil, err
			}
			out = append(out, rf)
		}
		if _, ok := x.(*accesslogv3.AccessLogFilter_AndFilter); ok {
			return allOf(out), nil
		}
		return anyOf(out), nil
	case *accesslogv3.AccessLogFilter_MetadataFilter:
		m := x.MetadataFilter.GetMatcher()
		if err := onlyFields(m, "filter", "path", "value"); err != nil {
			return nil, err
		}
		switch m.GetValue().GetMatchPattern().(type) {
		case *matcherv3.ValueMatcher_PresentMatch, *matcherv3.ValueMatcher_BoolMatch:
		case *matcherv3.ValueMatcher_StringMatch:
			if err := onlyFields(m.GetValue().GetStringMatch(), "exact"); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("metadata_filter: value matcher %T is not supported", m.GetValue().GetMatchPattern())
		}
		mm := metadataMatch{namespace: m.GetFilter(), value: m.GetValue(), ifNotFound: true}
		for _, seg := range m.GetPath() {
			mm.path = append(mm.path, seg.GetKey())
		}
		if v := x.MetadataFilter.GetMatchIfKeyNotFound(); v != nil {
			mm.ifNotFound = v.GetValue()
		}
		return mm, nil
	}
	return nil, fmt.Errorf("access log filter %T is not supported by the data plane", f.GetFilterSpecifier())
}

type headerTemplate struct {
	key       string
	value     *template
	overwrite bool
}

// bodyFormat is a SubstitutionFormatString: text or JSON.
type bodyFormat struct {
	text        *template
	json        *structpb.Struct
	contentType string
}

func translateLocalReply(c *hcmv3.LocalReplyConfig) (*localReplyConfig, error) {
	out := &localReplyConfig{}
	if c == nil {
		return out, nil
	}
	if err := onlyFields(c, "mappers", "body_format"); err != nil {
		return nil, err
	}
	if c.GetBodyFormat() != nil {
		f, err := translateFormat(c.GetBodyFormat())
		if err != nil {
			return nil, err
		}
		out.format = f
	}
	for i, m := range c.GetMappers() {
		if err := onlyFields(m, "filter", "status_code", "body", "body_format_override", "headers_to_add"); err != nil {
			return nil, err
		}
		f, err := translateFilter(m.GetFilter())
		if err != nil {
			return nil, fmt.Errorf("local_reply_config.mappers[%d]: %w", i, err)
		}
		rm := &replyMapper{filter: f}
		if s := m.GetStatusCode(); s != nil {
			rm.newStatus = int(s.GetValue())
		}
		if b := m.GetBody(); b != nil {
			if err := onlyFields(b, "inline_string"); err != nil {
				return nil, err
			}
			s := b.GetInlineString()
			rm.body = &s
		}
		if m.GetBodyFormatOverride() != nil {
			bf, err := translateFormat(m.GetBodyFormatOverride())
			if err != nil {
				return nil, fmt.Errorf("local_reply_config.mappers[%d]: %w", i, err)
			}
			rm.format = bf
		}
		for _, h := range m.GetHeadersToAdd() {
			t, err := parseTemplate(h.GetHeader().GetValue())
			if err != nil {
				return nil, fmt.Errorf("local_reply_config.mappers[%d].headers_to_add: %w", i, err)
			}
			rm.headersAdd = append(rm.headersAdd, headerTemplate{
				key:       strings.ToLower(h.GetHeader().GetKey()),
				value:     t,
				overwrite: h.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
		out.mappers = append(out.mappers, rm)
	}
	return out, nil
}

func translateFormat(f *corev3.SubstitutionFormatString) (*bodyFormat, error) {
	if err := onlyFields(f, "text_format", "json_format", "content_type", "text_format_source"); err != nil {
		return nil, err
	}
	bf := &bodyFormat{contentType: f.GetContentType()}
	switch {
	case f.GetJsonFormat() != nil:
		if err := checkJSONTemplates(f.GetJsonFormat()); err != nil {
			return nil, err
		}
		bf.json = f.GetJsonFormat()
		if bf.contentType == "" {
			bf.contentType = "application/json"
		}
	default:
		src := f.GetTextFormat()
		if s := f.GetTextFormatSource(); s != nil {
			src = s.GetInlineString()
		}
		t, err := parseTemplate(src)
		if err != nil {
			return nil, err
		}
		bf.text = t
		if bf.contentType == "" {
			bf.contentType = "text/plain"
		}
	}
	return bf, nil
}

func checkJSONTemplates(s *structpb.Struct) error {
	for _, v := range s.GetFields() {
		switch k := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			if _, err := parseTemplate(k.StringValue); err != nil {
				return err
			}
		case *structpb.Value_StructValue:
			if err := checkJSONTemplates(k.StructValue); err != nil {
				return err
			}
		}
	}
	return nil
}

// template is a parsed substitution format string: literal text and the
// command operators the data plane supports.
type template struct {
	parts []templatePart
}

type templatePart struct {
	literal string
	command string // REQ, RESP, LOCAL_REPLY_BODY, RESPONSE_CODE, RESPONSE_CODE_DETAILS, RESPONSE_FLAGS
	arg     string
}

var supportedCommands = map[string]bool{
	"REQ": true, "RESP": true, "LOCAL_REPLY_BODY": true, "RESPONSE_CODE": true,
	"RESPONSE_CODE_DETAILS": true, "RESPONSE_FLAGS": true,
}

func parseTemplate(s string) (*template, error) {
	t := &template{}
	for len(s) > 0 {
		i := strings.IndexByte(s, '%')
		if i < 0 {
			t.parts = append(t.parts, templatePart{literal: s})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{literal: s[:i]})
		}
		s = s[i+1:]
		j := strings.IndexByte(s, '%')
		if j < 0 {
			return nil, fmt.Errorf("format %q: unterminated command", s)
		}
		cmd := s[:j]
		s = s[j+1:]
		if cmd == "" { // %% is a literal percent sign
			t.parts = append(t.parts, templatePart{literal: "%"})
			continue
		}
		name, arg := cmd, ""
		if k := strings.IndexByte(cmd, '('); k >= 0 && strings.HasSuffix(cmd, ")") {
			name, arg = cmd[:k], cmd[k+1:len(cmd)-1]
		}
		if !supportedCommands[name] {
			return nil, fmt.Errorf("format command %%%s%% is not supported by the data plane", cmd)
		}
		t.parts = append(t.parts, templatePart{command: name, arg: strings.ToLower(arg)})
	}
	return t, nil
}

// replyContext is what a local reply's filters and format commands read.
type replyContext struct {
	// metadata reads the stream's dynamic metadata (nil: none).
	metadata func(namespace string, path []string) *structpb.Value
	request  *http.Request
	// path is :path ("" before it was read, or for CONNECT).
	path    string
	resp    http.Header
	code    int
	details string
	flags   string
	body    string
}

// value evaluates one command; ok is false when the value is absent.
func (p templatePart) value(c *replyContext) (string, bool) {
	switch p.command {
	case "REQ":
		if p.arg == ":path" {
			return c.path, c.path != ""
		}
		v := c.request.Header.Get(p.arg)
		return v, v != ""
	case "RESP":
		v := c.resp.Get(p.arg)
		return v, v != ""
	case "LOCAL_REPLY_BODY":
		return c.body, true
	case "RESPONSE_CODE":
		return strconv.Itoa(c.code), true
	case "RESPONSE_CODE_DETAILS":
		// Every local reply sets details, if only to "" (an
		// ImmediateResponse without any).
		return c.details, true
	case "RESPONSE_FLAGS":
		if c.flags == "" {
			return "-", true // Envoy's rendering of no flags
		}
		return c.flags, true
	}
	return "", false
}

func (t *template) render(c *replyContext) string {
	return t.renderWith(c, "-") // Envoy's placeholder for an absent value
}

// renderWith renders the template with absent values as absent.
func (t *template) renderWith(c *replyContext, absent string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.command == "" {
			b.WriteString(p.literal)
			continue
		}
		v, ok := p.value(c)
		if !ok {
			v = absent
		}
		b.WriteString(v)
	}
	return b.String()
}

// renderJSON renders a json_format: a string that is exactly one command
// becomes null when absent, as in Envoy; other values pass through.
func renderJSON(s *structpb.Struct, c *replyContext) map[string]any {
	out := make(map[string]any, len(s.GetFields()))
	for k, v := range s.GetFields() {
		switch kind := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			t, _ := parseTemplate(kind.StringValue) // checked at translation
			if len(t.parts) == 1 && t.parts[0].command != "" {
				if val, ok := t.parts[0].value(c); ok {
					out[k] = val
				} else {
					out[k] = nil
				}
				continue
			}
			out[k] = t.render(c)
		case *structpb.Value_StructValue:
			out[k] = renderJSON(kind.StructValue, c)
		default:
			out[k] = v.AsInterface()
		}
	}
	return out
}

func (f *bodyFormat) render(c *replyContext) string {
	if f.json != nil {
		b, err := json.Marshal(renderJSON(f.json, c))
		if err != nil {
			return c.body
		}
		return string(b) + "\n"
	}
	return f.text.render(c)
}

// apply rewrites a local reply: status, headers, body and content type.
func (lr *localReplyConfig) apply(c *replyContext, headers http.Header) (int, string) {
	code, body := c.code, c.body
	var format *bodyFormat
	for _, m := range lr.mappers {
		if !m.filter.matches(c) {
			continue
		}
		if m.newStatus != 0 {
			code = m.newStatus
		}
		if m.body != nil {
			body = *m.body
		}
		for _, h := range m.headersAdd {
			// An absent value renders empty here, and Envoy adds no
			// header with an empty value (no x-custos-request-id
			// before the request has an id).
			v := h.value.renderWith(c, "")
			if v == "" {
				continue
			}
			if h.overwrite {
				headers.Set(h.key, v)
			} else {
				headers.Add(h.key, v)
			}
		}
		format = m.format
		break
	}
	if format == nil {
		format = lr.format
	}
	c.code, c.body = code, body
	if format != nil {
		body = format.render(c)
		headers.Set("content-type", format.contentType)
	}
	return code, body
}
