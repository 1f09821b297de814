package approvals

import "sync"

// watchers wakes the waiters of an approval when it changes. A wake-up is
// a hint to read the approval again, never the news itself, so a channel
// with room for one signal is enough and a full one loses nothing.
type watchers struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]struct{}
}

// watch registers a waiter of id.
func (w *watchers) watch(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string]map[chan struct{}]struct{}{}
	}
	if w.m[id] == nil {
		w.m[id] = map[chan struct{}]struct{}{}
	}
	w.m[id][ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.m[id], ch)
		if len(w.m[id]) == 0 {
			delete(w.m, id)
		}
		w.mu.Unlock()
	}
}

// wake signals the waiters of id.
func (w *watchers) wake(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.m[id] {
		signal(ch)
	}
}

// wakeAll signals every waiter: after a lost connection, when changes may
// have been missed.
func (w *watchers) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, chs := range w.m {
		for ch := range chs {
			signal(ch)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// count is how many waiters id has.
func (w *watchers) count(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m[id])
}
