package approvals

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/record"
)

// Defaults of Options.
const (
	DefaultExpiry     = 24 * time.Hour
	DefaultGrantTTL   = time.Hour
	DefaultSweepEvery = time.Minute
	// listLimit bounds what one list reads from the store.
	listLimit = 1000
)

// Options configure a Service.
type Options struct {
	// Store keeps the approvals; the caller opens and closes it.
	Store Store
	// Recorder receives approval_requested, approval_voted and
	// approval_resolved events; nil records nothing.
	Recorder record.Recorder
	// Webhooks are notified on each request and resolution.
	Webhooks []Webhook
	// Logger logs what has no caller to tell (dropped webhooks, sweeps).
	Logger *slog.Logger
	// Expiry is how long a request stays pending when it names no expiry
	// (approvals.expiry); DefaultExpiry when 0.
	Expiry time.Duration
	// GrantTTL bounds a grant whose request names no TTL; DefaultGrantTTL
	// when 0.
	GrantTTL time.Duration
	// SweepEvery is how often what is past due is expired;
	// DefaultSweepEvery when 0, none when negative (expiry is then lazy
	// only).
	SweepEvery time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Service implements approval.Grants over a Store and takes votes.
type Service struct {
	store    Store
	recorder record.Recorder
	hooks    *notifier
	log      *slog.Logger
	expiry   time.Duration
	ttl      time.Duration
	now      func() time.Time

	stop     context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

var _ approval.Grants = (*Service)(nil)

// New starts a Service: its sweeper and its webhook sender run until
// Close.
func New(o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("approvals: no store")
	}
	s := &Service{store: o.Store, recorder: o.Recorder, log: o.Logger,
		expiry: o.Expiry, ttl: o.GrantTTL, now: o.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.expiry <= 0 {
		s.expiry = DefaultExpiry
	}
	if s.ttl <= 0 {
		s.ttl = DefaultGrantTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	hooks, err := newNotifier(ctx, o.Webhooks, s.log)
	if err != nil {
		cancel()
		return nil, err
	}
	s.hooks = hooks
	every := o.SweepEvery
	if every == 0 {
		every = DefaultSweepEvery
	}
	if every > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.sweepEvery(ctx, every)
		}()
	}
	return s, nil
}

// Close stops the sweeper and the webhook sender (what is still queued is
// dropped). The store stays open.
func (s *Service) Close() error {
	s.stopOnce.Do(func() {
		s.stop()
		s.wg.Wait()
		s.hooks.wait()
	})
	return nil
}

// Get returns approval id, expired first if it is past due.
func (s *Service) Get(ctx context.Context, id string) (Approval, error) {
	a, err := s.store.Get(ctx, id)
	if err != nil {
		return Approval{}, err
	}
	if due(&a, s.now()) {
		return s.expire(ctx, id)
	}
	return a, nil
}

// List returns the approvals in state (all when ""), newest first, each
// expired first if it is past due.
func (s *Service) List(ctx context.Context, state string) ([]Approval, error) {
	all, err := s.store.List(ctx, state, listLimit)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := all[:0]
	for _, a := range all {
		if due(&a, now) {
			if a, err = s.expire(ctx, a.ID); err != nil {
				return nil, err
			}
			if state != "" && a.State != state {
				continue
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// Wait returns approval id once it is no longer pending, or when ctx ends
// (then with the approval as it is and ctx's error). It never uses a
// grant: it is the agent's long poll, not the request.
func (s *Service) Wait(ctx context.Context, id string) (Approval, error) {
	changed, stop := s.store.Watch(id)
	defer stop()
	for {
		a, err := s.Get(ctx, id)
		if err != nil || a.State != StatePending {
			return a, err
		}
		// Expiry comes without a change to wake on.
		t := time.NewTimer(max(a.Expires.Sub(s.now()), 0) + 10*time.Millisecond)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return a, ctx.Err()
		}
		t.Stop()
	}
}

// RecordsEvents reports whether the service records approval events
// itself (it has a Recorder): the data plane's hold then records none.
func (s *Service) RecordsEvents() bool { return s.recorder != nil }

// Denial says who denied approval id and why (the deny vote's voter and
// comment), for the agent's approval_denied answer; empty when the
// approval was not denied by a vote.
func (s *Service) Denial(ctx context.Context, id string) (reason, by string) {
	a, err := s.Get(ctx, id)
	if err != nil {
		return "", ""
	}
	for _, v := range a.Votes {
		if v.Decision == Deny {
			by := v.Voter.Issuer + "/" + v.Voter.Subject
			if v.Voter.Name != "" {
				by = v.Voter.Name + " (" + by + ")"
			}
			return v.Comment, by
		}
	}
	return "", ""
}
