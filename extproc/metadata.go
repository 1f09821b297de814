package extproc

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/custos-dev/custos/xds"
)

// Keys of the dynamic metadata Check leaves for ext_proc (namespace
// envoy.filters.http.ext_authz, forwarded through metadata_options).
const (
	mdRequestID  = "request_id"
	mdConnection = "connection"
	mdSession    = "session_id"
	mdPath       = "upstream_path"
	mdMethod     = "method"
	mdExtProc    = "extproc"
	// mdDenied is true when Check itself answered (a denial): the listener's
	// local_reply_config mappers skip such replies, so Custos' own JSON
	// reaches the agent unchanged.
	mdDenied = xds.DeniedKey
)

// decision is what Check decided about a request and ext_proc acts on.
type decision struct {
	RequestID  string
	Connection string
	SessionID  string
	// Path is the path the upstream receives, without the query.
	Path   string
	Method string
	// ExtProc is true on routes where Custos' xDS placed ext_proc.
	ExtProc bool
	// Denied is true when Check answered the request itself.
	Denied bool
}

func (d decision) metadata() *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		mdRequestID:  structpb.NewStringValue(d.RequestID),
		mdConnection: structpb.NewStringValue(d.Connection),
		mdSession:    structpb.NewStringValue(d.SessionID),
		mdPath:       structpb.NewStringValue(d.Path),
		mdMethod:     structpb.NewStringValue(d.Method),
		mdExtProc:    structpb.NewBoolValue(d.ExtProc),
		mdDenied:     structpb.NewBoolValue(d.Denied),
	}}
}

var errNoDecision = errors.New("no decision from Check in the forwarded dynamic metadata")

// decisionFrom reads a decision back; anything missing is an error, so that a
// request that did not pass Check is never processed as if it had.
func decisionFrom(s *structpb.Struct) (decision, error) {
	if s == nil || len(s.GetFields()) == 0 {
		return decision{}, errNoDecision
	}
	str := func(k string) (string, error) {
		v, ok := s.GetFields()[k]
		if !ok {
			return "", fmt.Errorf("%w: %s missing", errNoDecision, k)
		}
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok || sv.StringValue == "" {
			return "", fmt.Errorf("%w: %s is not a non-empty string", errNoDecision, k)
		}
		return sv.StringValue, nil
	}
	var d decision
	var err error
	if d.RequestID, err = str(mdRequestID); err != nil {
		return d, err
	}
	if d.Connection, err = str(mdConnection); err != nil {
		return d, err
	}
	if d.SessionID, err = str(mdSession); err != nil {
		return d, err
	}
	if d.Path, err = str(mdPath); err != nil {
		return d, err
	}
	if d.Method, err = str(mdMethod); err != nil {
		return d, err
	}
	d.ExtProc = s.GetFields()[mdExtProc].GetBoolValue()
	if s.GetFields()[mdDenied].GetBoolValue() {
		// A denied request never reaches ext_proc behind Envoy.
		return d, fmt.Errorf("%w: the request was denied", errNoDecision)
	}
	return d, nil
}
