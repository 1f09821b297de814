package extproc

import (
	"context"
	"sync"
	"time"
)

// pendingRecords are decisions recorded without waiting
// (audit.durability before_response), each handed from Check to the
// Process stream of the same request. An entry Process never takes (the
// stream never came: the agent left before) is dropped after
// pendingLifetime; its append finishes regardless.
type pendingRecords struct {
	mu      sync.Mutex
	m       map[string]pendingRecord
	swept   time.Time
	nowFunc func() time.Time
}

type pendingRecord struct {
	wait func(context.Context) (string, error)
	at   time.Time
}

const pendingLifetime = 10 * time.Minute

func (p *pendingRecords) now() time.Time {
	if p.nowFunc != nil {
		return p.nowFunc()
	}
	return time.Now()
}

// put registers the wait of request id's decision.
func (p *pendingRecords) put(id string, wait func(context.Context) (string, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.m == nil {
		p.m = map[string]pendingRecord{}
	}
	if now.Sub(p.swept) > time.Minute {
		for k, r := range p.m {
			if now.Sub(r.at) > pendingLifetime {
				delete(p.m, k)
			}
		}
		p.swept = now
	}
	p.m[id] = pendingRecord{wait: wait, at: now}
}

// take removes and returns request id's wait (nil if none).
func (p *pendingRecords) take(id string) func(context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.m[id]
	if !ok {
		return nil
	}
	delete(p.m, id)
	return r.wait
}
