package extproc

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/custos-dev/custos/names"
)

// Verdict is what Check decided about a request and Process acts on. Check
// writes it to dynamic metadata (namespace names.VerdictNamespace), Envoy
// forwards it to ext_proc, and Process reads it back; both go through the
// one table of fields below, so what is written is what is read.
type Verdict struct {
	RequestID  string
	Connection string
	// SessionID is the session namespaced by principal; Session its name.
	SessionID string
	Session   string
	// Principal is the principal's issuer/subject; Groups its groups.
	Principal string
	Groups    []string
	Method    string
	// Path is the path the upstream receives, without the query.
	Path       string
	DecisionID string
	Revision   string
	Reasons    []string
	// MaskProfile are the names of the effective masking profile, empty for none.
	MaskProfile []string
	// Hold, when set, makes Process hold the request for an approval.
	Hold *Hold
	// ExtProc is true on routes where Custos' xDS placed ext_proc.
	ExtProc bool
	// Denied is true when Check answered the request itself.
	Denied bool
	// EvidencePending is true when Check started recording the decision
	// without waiting (audit.durability before_response): Process holds the
	// response until it is durable.
	EvidencePending bool
}

// Hold is a request held in Process for an approval.
type Hold struct {
	ApprovalID string
	// Timeout is how long the request is held before the agent is told
	// approval_required.
	Timeout time.Duration
}

// field is one verdict field in dynamic metadata: its key, whether a
// verdict without it is refused, how it is written and how it is read.
type field struct {
	key      string
	required bool
	put      func(v *Verdict) (*structpb.Value, bool)
	get      func(v *Verdict, x *structpb.Value) error
}

func stringField(key string, required bool, at func(*Verdict) *string) field {
	return field{key: key, required: required,
		put: func(v *Verdict) (*structpb.Value, bool) {
			s := *at(v)
			return structpb.NewStringValue(s), s != "" || required
		},
		get: func(v *Verdict, x *structpb.Value) error {
			s, ok := x.GetKind().(*structpb.Value_StringValue)
			if !ok || (required && s.StringValue == "") {
				return errors.New("not a non-empty string")
			}
			*at(v) = s.StringValue
			return nil
		}}
}

func boolField(key string, at func(*Verdict) *bool) field {
	return field{key: key,
		put: func(v *Verdict) (*structpb.Value, bool) { return structpb.NewBoolValue(*at(v)), true },
		get: func(v *Verdict, x *structpb.Value) error {
			b, ok := x.GetKind().(*structpb.Value_BoolValue)
			if !ok {
				return errors.New("not a bool")
			}
			*at(v) = b.BoolValue
			return nil
		}}
}

func listField(key string, at func(*Verdict) *[]string) field {
	return field{key: key,
		put: func(v *Verdict) (*structpb.Value, bool) {
			l := *at(v)
			vals := make([]*structpb.Value, len(l))
			for i, s := range l {
				vals[i] = structpb.NewStringValue(s)
			}
			return structpb.NewListValue(&structpb.ListValue{Values: vals}), len(l) > 0
		},
		get: func(v *Verdict, x *structpb.Value) error {
			l, ok := x.GetKind().(*structpb.Value_ListValue)
			if !ok {
				return errors.New("not a list")
			}
			out := make([]string, 0, len(l.ListValue.GetValues()))
			for i, e := range l.ListValue.GetValues() {
				s, ok := e.GetKind().(*structpb.Value_StringValue)
				if !ok {
					return fmt.Errorf("element %d is not a string", i)
				}
				out = append(out, s.StringValue)
			}
			*at(v) = out
			return nil
		}}
}

// holdField is a nested struct: {approval_id, timeout_ms}.
var holdField = field{key: "hold",
	put: func(v *Verdict) (*structpb.Value, bool) {
		if v.Hold == nil {
			return nil, false
		}
		return structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"approval_id": structpb.NewStringValue(v.Hold.ApprovalID),
			"timeout_ms":  structpb.NewNumberValue(float64(v.Hold.Timeout.Milliseconds())),
		}}), true
	},
	get: func(v *Verdict, x *structpb.Value) error {
		s, ok := x.GetKind().(*structpb.Value_StructValue)
		if !ok {
			return errors.New("not a struct")
		}
		f := s.StructValue.GetFields()
		id, ok := f["approval_id"].GetKind().(*structpb.Value_StringValue)
		if !ok || id.StringValue == "" {
			return errors.New("approval_id is not a non-empty string")
		}
		ms, ok := f["timeout_ms"].GetKind().(*structpb.Value_NumberValue)
		// A hold is at most an hour (Envoy's max_message_timeout cap).
		if !ok || !(ms.NumberValue >= 1 && ms.NumberValue <= float64(time.Hour/time.Millisecond)) || ms.NumberValue != float64(int64(ms.NumberValue)) {
			return errors.New("timeout_ms is not a whole number of milliseconds between 1 and 3600000")
		}
		v.Hold = &Hold{ApprovalID: id.StringValue, Timeout: time.Duration(ms.NumberValue) * time.Millisecond}
		return nil
	}}

// verdictFields is the one table of what a verdict carries.
var verdictFields = []field{
	stringField("request_id", true, func(v *Verdict) *string { return &v.RequestID }),
	stringField("connection", true, func(v *Verdict) *string { return &v.Connection }),
	stringField("session_id", true, func(v *Verdict) *string { return &v.SessionID }),
	stringField("session", true, func(v *Verdict) *string { return &v.Session }),
	stringField("principal", true, func(v *Verdict) *string { return &v.Principal }),
	listField("groups", func(v *Verdict) *[]string { return &v.Groups }),
	stringField("method", true, func(v *Verdict) *string { return &v.Method }),
	stringField("upstream_path", true, func(v *Verdict) *string { return &v.Path }),
	stringField("decision_id", true, func(v *Verdict) *string { return &v.DecisionID }),
	stringField("policy_revision", false, func(v *Verdict) *string { return &v.Revision }),
	listField("reasons", func(v *Verdict) *[]string { return &v.Reasons }),
	listField("mask_profile", func(v *Verdict) *[]string { return &v.MaskProfile }),
	holdField,
	boolField("extproc", func(v *Verdict) *bool { return &v.ExtProc }),
	boolField("evidence_pending", func(v *Verdict) *bool { return &v.EvidencePending }),
	// Denied is written on every verdict: the listener's local reply
	// mappers read it (names.DeniedKey) to leave Custos' own JSON alone.
	boolField(names.DeniedKey, func(v *Verdict) *bool { return &v.Denied }),
}

// Struct is v as dynamic metadata.
func (v Verdict) Struct() *structpb.Struct {
	s := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(verdictFields))}
	for _, f := range verdictFields {
		if x, ok := f.put(&v); ok {
			s.Fields[f.key] = x
		}
	}
	return s
}

// errNoVerdict is the cause of every verdict Process refuses.
var errNoVerdict = errors.New("no verdict from Check in the forwarded dynamic metadata")

// verdictFrom reads a verdict back. Anything missing, of the wrong type or
// out of range is an error, and so is a denial, so that a request that did
// not pass Check is never processed as if it had. Keys it does not know are
// ignored: a newer Check may add some while replicas are upgraded.
func verdictFrom(s *structpb.Struct) (Verdict, error) {
	var v Verdict
	if s == nil || len(s.GetFields()) == 0 {
		return v, errNoVerdict
	}
	for _, f := range verdictFields {
		x, ok := s.GetFields()[f.key]
		if !ok || x == nil {
			if f.required {
				return Verdict{}, fmt.Errorf("%w: %s missing", errNoVerdict, f.key)
			}
			continue
		}
		if err := f.get(&v, x); err != nil {
			return Verdict{}, fmt.Errorf("%w: %s %v", errNoVerdict, f.key, err)
		}
	}
	if v.Denied {
		// A denied request never reaches ext_proc behind Envoy.
		return Verdict{}, fmt.Errorf("%w: the request was denied", errNoVerdict)
	}
	return v, nil
}
