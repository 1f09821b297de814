package policy

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Approval scopes.
const (
	ScopeRequest = "request"
	ScopeWindow  = "window"
)

// Limits on what a decision may hold, so a policy cannot flood the reply,
// the metadata or the log.
const (
	maxReasons     = 32
	maxReasonBytes = 1024
	maxApprovers   = 32
	maxNameBytes   = 256
	maxTTL         = 30 * 24 * time.Hour
)

// ErrMalformed marks a decision Custos cannot read: the request is
// answered 503, never allowed.
var ErrMalformed = errors.New("malformed decision")

// ParseDecision reads a decision object (CONTRACT.md) as a policy returned
// it. Every key is checked: a missing or mistyped allow, an unknown key (a
// misspelt mask_profile would silently drop masking), reasons that are not
// strings, an approval without approvers, all are ErrMalformed.
func ParseDecision(v any) (Decision, error) {
	var d Decision
	obj, ok := v.(map[string]any)
	if !ok {
		return d, fmt.Errorf("%w: not an object (%T)", ErrMalformed, v)
	}
	allow, ok := obj["allow"].(bool)
	if !ok {
		return d, fmt.Errorf("%w: allow must be true or false", ErrMalformed)
	}
	d.Allow = allow
	for k, val := range obj {
		switch k {
		case "allow":
		case "reasons":
			list, ok := val.([]any)
			if !ok || len(list) > maxReasons {
				return d, fmt.Errorf("%w: reasons must be a list of at most %d strings", ErrMalformed, maxReasons)
			}
			for _, r := range list {
				s, ok := r.(string)
				if !ok || len(s) > maxReasonBytes {
					return d, fmt.Errorf("%w: each reason must be a string of at most %d bytes", ErrMalformed, maxReasonBytes)
				}
				d.Reasons = append(d.Reasons, s)
			}
		case "mask_profile":
			s, ok := val.(string)
			if !ok || len(s) > maxNameBytes {
				return d, fmt.Errorf("%w: mask_profile must be a profile name", ErrMalformed)
			}
			d.MaskProfile = s
		case "approval":
			a, err := parseApproval(val)
			if err != nil {
				return d, err
			}
			d.Approval = a
		default:
			return d, fmt.Errorf("%w: unknown key %q", ErrMalformed, cutKey(k))
		}
	}
	return d, nil
}

func parseApproval(v any) (*Approval, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: approval must be an object", ErrMalformed)
	}
	a := &Approval{MinApprovals: 1, Scope: ScopeRequest}
	for k, val := range obj {
		switch k {
		case "rule":
			s, ok := val.(string)
			if !ok || s == "" || len(s) > maxNameBytes {
				return nil, fmt.Errorf("%w: approval.rule must be a non-empty string", ErrMalformed)
			}
			a.Rule = s
		case "approvers":
			list, ok := val.([]any)
			if !ok || len(list) > maxApprovers {
				return nil, fmt.Errorf("%w: approval.approvers must be a list of at most %d groups", ErrMalformed, maxApprovers)
			}
			for _, x := range list {
				s, ok := x.(string)
				if !ok || s == "" || len(s) > maxNameBytes {
					return nil, fmt.Errorf("%w: each approver must be a group or role name", ErrMalformed)
				}
				if !slices.Contains(a.Approvers, s) {
					a.Approvers = append(a.Approvers, s)
				}
			}
		case "min_approvals":
			n, ok := integer(val)
			if !ok || n < 1 || n > 16 {
				return nil, fmt.Errorf("%w: approval.min_approvals must be an integer from 1 to 16", ErrMalformed)
			}
			a.MinApprovals = n
		case "scope":
			s, _ := val.(string)
			if s != ScopeRequest && s != ScopeWindow {
				return nil, fmt.Errorf("%w: approval.scope must be request or window", ErrMalformed)
			}
			a.Scope = s
		case "ttl":
			s, _ := val.(string)
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 || d > maxTTL {
				return nil, fmt.Errorf("%w: approval.ttl must be a Go duration up to %s", ErrMalformed, maxTTL)
			}
			a.TTL = d
		default:
			return nil, fmt.Errorf("%w: unknown key approval.%s", ErrMalformed, cutKey(k))
		}
	}
	if a.Rule == "" || len(a.Approvers) == 0 {
		return nil, fmt.Errorf("%w: approval needs a rule and at least one approver group", ErrMalformed)
	}
	if a.Scope == ScopeWindow && a.TTL == 0 {
		return nil, fmt.Errorf("%w: a window approval needs a ttl", ErrMalformed)
	}
	return a, nil
}

// integer reads a JSON number that is a whole number (OPA hands numbers to
// Go as json.Number).
func integer(v any) (int, bool) {
	switch n := v.(type) {
	case interface{ Int64() (int64, error) }:
		i, err := n.Int64()
		return int(i), err == nil && i >= -1<<31 && i < 1<<31
	case float64:
		return int(n), n == float64(int(n))
	case int:
		return n, true
	}
	return 0, false
}

func cutKey(k string) string {
	if len(k) > 64 {
		return k[:64] + "…"
	}
	return k
}
