// Package pubsub fans values out to subscribers without ever blocking the
// publisher. Each subscriber has a bounded buffer; when it falls behind,
// newer values are dropped for it alone and counted, so a reader that must
// not miss anything re-reads the full state when Missed reports a loss.
//
// # Caveats
//
// Publish may be called with the publisher's own locks held: it takes only
// the topic's lock and never waits for a reader. Values are shared between
// subscribers, so they must not be changed after they are published.
package pubsub

import (
	"sync"
	"sync/atomic"
)

// Topic is a set of subscribers of values of type T. The zero value is
// ready to use. It is safe for concurrent use.
type Topic[T any] struct {
	mu   sync.Mutex
	subs map[*Subscription[T]]struct{}
}

// Subscription is one reader of a Topic.
type Subscription[T any] struct {
	c      chan T
	missed atomic.Uint64
	topic  *Topic[T]
	once   sync.Once
}

// Subscribe adds a reader whose buffer holds up to buffer values (at
// least 1). Close it when done.
func (t *Topic[T]) Subscribe(buffer int) *Subscription[T] {
	s := &Subscription[T]{c: make(chan T, max(buffer, 1)), topic: t}
	t.mu.Lock()
	if t.subs == nil {
		t.subs = map[*Subscription[T]]struct{}{}
	}
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	return s
}

// Publish hands v to every subscriber with room for it and counts it as
// missed by the others. It never blocks.
func (t *Topic[T]) Publish(v T) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.subs {
		select {
		case s.c <- v:
		default:
			s.missed.Add(1)
		}
	}
}

// Len reports the number of subscribers.
func (t *Topic[T]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.subs)
}

// C returns the channel the subscriber's values arrive on. It is never
// closed, so that Close cannot race a Publish; stop reading after Close.
func (s *Subscription[T]) C() <-chan T { return s.c }

// Missed returns how many values were dropped for this subscriber since the
// last call, and resets the count. It waits for a Publish under way, so a
// reader that has emptied C and then sees 0 has missed nothing: a value
// published after this call finds room in C.
func (s *Subscription[T]) Missed() uint64 {
	s.topic.mu.Lock()
	defer s.topic.mu.Unlock()
	return s.missed.Swap(0)
}

// Close ends the subscription; no value is delivered after it returns. It
// is safe to call more than once.
func (s *Subscription[T]) Close() {
	s.once.Do(func() {
		s.topic.mu.Lock()
		delete(s.topic.subs, s)
		s.topic.mu.Unlock()
	})
}
