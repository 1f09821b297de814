package approvals

import (
	"context"
	"errors"
	"time"
)

// due reports whether a is past its time at now: a pending request past
// its expiry, or a grant past its end. Either becomes expired.
func due(a *Approval, now time.Time) bool {
	switch a.State {
	case StatePending:
		return !now.Before(a.Expires)
	case StateApproved:
		return !a.GrantExpires.IsZero() && !now.Before(a.GrantExpires)
	}
	return false
}

var errNotDue = errors.New("not due")

// expire moves approval id to expired if it is due, and returns it as it
// then is. A request that expired pending is resolved: recorded and sent
// to the webhooks; a grant that ran out was resolved when approved.
func (s *Service) expire(ctx context.Context, id string) (Approval, error) {
	wasPending := false
	a, err := s.store.Update(ctx, id, func(a *Approval) error {
		now := s.now()
		if !due(a, now) {
			return errNotDue
		}
		wasPending = a.State == StatePending
		if wasPending {
			a.Resolved, a.ResolvedBy = now, "expiry"
		}
		a.State = StateExpired
		return nil
	})
	if errors.Is(err, errNotDue) {
		// Another replica or goroutine got there first, or a vote did.
		return s.store.Get(ctx, id)
	}
	if err != nil {
		return Approval{}, err
	}
	if wasPending {
		return a, s.resolved(ctx, a)
	}
	return a, nil
}

// Sweep expires every pending request and grant that is past due, and
// returns how many it expired.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	n := 0
	for _, state := range []string{StatePending, StateApproved} {
		all, err := s.store.List(ctx, state, 0)
		if err != nil {
			return n, err
		}
		now := s.now()
		for _, a := range all {
			if !due(&a, now) {
				continue
			}
			got, err := s.expire(ctx, a.ID)
			if err != nil {
				return n, err
			}
			if got.State == StateExpired {
				n++
			}
		}
	}
	return n, nil
}

func (s *Service) sweepEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("approvals: sweep", "err", err)
		} else if n > 0 {
			s.log.Info("approvals: expired", "count", n)
		}
	}
}
