package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// wire is the JSON shape of an event, for decoding.
type wire struct {
	ClassUID int64  `json:"class_uid"`
	Time     string `json:"time"`
	Actor    struct {
		User struct {
			UID    string `json:"uid"`
			Type   string `json:"type"`
			Groups []struct {
				Name string `json:"name"`
			} `json:"groups"`
			Roles []string `json:"roles"`
		} `json:"user"`
		AppName string `json:"app_name"`
	} `json:"actor"`
	HTTPRequest *struct {
		Method string `json:"http_method"`
		URL    struct {
			Path string `json:"path"`
		} `json:"url"`
	} `json:"http_request"`
	HTTPResponse *struct {
		Code int `json:"code"`
	} `json:"http_response"`
	StartTime string `json:"start_time"`
	EndTime   string `json:"end_time"`
	Custos    *struct {
		Kind       string `json:"kind"`
		LogID      string `json:"log_id"`
		Index      *int64 `json:"index"`
		SessionID  string `json:"session_id"`
		Session    string `json:"session"`
		RequestID  string `json:"request_id"`
		Connection string `json:"connection"`
		Decision   *struct {
			ID             string   `json:"id"`
			Allow          bool     `json:"allow"`
			Reasons        []string `json:"reasons"`
			PolicyRevision string   `json:"policy_revision"`
			Shadow         bool     `json:"shadow"`
		} `json:"decision"`
		Action   *Action `json:"action"`
		Approval *struct {
			ID        string   `json:"id"`
			State     string   `json:"state"`
			Rule      string   `json:"rule"`
			Approvers []string `json:"approvers"`
			Voter     string   `json:"voter"`
			Vote      string   `json:"vote"`
		} `json:"approval"`
		Masking *struct {
			Profile         string                    `json:"profile"`
			Counts          map[string]int            `json:"counts"`
			Operators       map[string]map[string]int `json:"operators"`
			Pointers        []string                  `json:"pointers"`
			PointersDropped int                       `json:"pointers_dropped"`
			Unread          bool                      `json:"unread"`
		} `json:"masking"`
		BodySHA256 string `json:"body_sha256"`
		Change     *struct {
			Revision string `json:"revision"`
			Previous string `json:"previous"`
			Digest   string `json:"digest"`
			Source   string `json:"source"`
		} `json:"change"`
		Claimed *struct {
			Issuer  string `json:"issuer"`
			Subject string `json:"subject"`
			KeyID   string `json:"key_id"`
		} `json:"claimed"`
		Detail string `json:"detail"`
	} `json:"custos"`
}

// DecodeEvent parses an event's JSON as the log stores it. The input is
// untrusted (it comes from a log directory or a Kafka topic): DecodeEvent
// checks the class, the kind and the index, and never panics.
func DecodeEvent(b []byte) (Event, error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Event{}, fmt.Errorf("decode audit event: %w", err)
	}
	if w.ClassUID != ClassAPIActivity {
		return Event{}, fmt.Errorf("decode audit event: class_uid %d, want %d", w.ClassUID, ClassAPIActivity)
	}
	c := w.Custos
	if c == nil {
		return Event{}, errors.New("decode audit event: no custos block")
	}
	if !Kind(c.Kind).Valid() {
		return Event{}, fmt.Errorf("decode audit event: unknown kind %q", c.Kind)
	}
	if c.Index == nil || *c.Index < 0 {
		return Event{}, errors.New("decode audit event: no custos.index")
	}
	e := Event{
		Kind:       Kind(c.Kind),
		LogID:      c.LogID,
		Index:      *c.Index,
		SessionID:  c.SessionID,
		Session:    c.Session,
		RequestID:  c.RequestID,
		Connection: c.Connection,
		Action:     c.Action,
		BodySHA256: c.BodySHA256,
		Detail:     c.Detail,
		Actor: Actor{
			UID:   w.Actor.User.UID,
			Type:  w.Actor.User.Type,
			Roles: w.Actor.User.Roles,
			App:   w.Actor.AppName,
		},
	}
	var err error
	if e.Time, err = parseTime(w.Time, true); err != nil {
		return Event{}, err
	}
	if e.Started, err = parseTime(w.StartTime, false); err != nil {
		return Event{}, err
	}
	if e.Finished, err = parseTime(w.EndTime, false); err != nil {
		return Event{}, err
	}
	for _, g := range w.Actor.User.Groups {
		e.Actor.Groups = append(e.Actor.Groups, g.Name)
	}
	if r := w.HTTPRequest; r != nil {
		e.Request = &HTTPRequest{Method: r.Method, Path: r.URL.Path}
	}
	if r := w.HTTPResponse; r != nil {
		e.Response = &HTTPResponse{Code: r.Code}
	}
	if d := c.Decision; d != nil {
		e.Decision = &DecisionInfo{ID: d.ID, Allow: d.Allow, Reasons: d.Reasons, PolicyRevision: d.PolicyRevision, Shadow: d.Shadow}
	}
	if a := c.Approval; a != nil {
		e.Approval = &Approval{ID: a.ID, State: a.State, Rule: a.Rule, Approvers: a.Approvers, Voter: a.Voter, Vote: a.Vote}
	}
	if m := c.Masking; m != nil {
		e.Masking = &Masking{Profile: m.Profile, Counts: m.Counts, Operators: m.Operators,
			Pointers: m.Pointers, PointersDropped: m.PointersDropped, Unread: m.Unread}
	}
	if ch := c.Change; ch != nil {
		e.Change = &Change{Revision: ch.Revision, Previous: ch.Previous, Digest: ch.Digest, Source: ch.Source}
	}
	if cl := c.Claimed; cl != nil {
		e.Claimed = &Claimed{Issuer: cl.Issuer, Subject: cl.Subject, KeyID: cl.KeyID}
	}
	return e, nil
}

func parseTime(s string, required bool) (time.Time, error) {
	if s == "" && !required {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("decode audit event: time is not RFC 3339")
	}
	return t.UTC(), nil
}
