package pubsub

import (
	"sync"
	"testing"
)

func TestFanOutInOrder(t *testing.T) {
	var top Topic[int]
	a, b := top.Subscribe(1000), top.Subscribe(1000)
	defer a.Close()
	defer b.Close()
	for i := range 1000 {
		top.Publish(i)
	}
	for _, s := range []*Subscription[int]{a, b} {
		for want := range 1000 {
			if got := <-s.C(); got != want {
				t.Fatalf("got %d, want %d", got, want)
			}
		}
		if m := s.Missed(); m != 0 {
			t.Fatalf("missed %d with room for all", m)
		}
	}
}

func TestSlowReaderLosesOnlyItsOwn(t *testing.T) {
	var top Topic[int]
	slow, fast := top.Subscribe(4), top.Subscribe(100)
	defer slow.Close()
	defer fast.Close()
	for i := range 10 {
		top.Publish(i)
	}
	if m := slow.Missed(); m != 6 {
		t.Fatalf("slow missed %d, want 6", m)
	}
	if m := slow.Missed(); m != 0 {
		t.Fatalf("Missed did not reset: %d", m)
	}
	for want := range 4 { // the oldest values are kept, in order
		if got := <-slow.C(); got != want {
			t.Fatalf("slow got %d, want %d", got, want)
		}
	}
	if len(fast.C()) != 10 || fast.Missed() != 0 {
		t.Fatalf("fast reader holds %d, missed some", len(fast.C()))
	}
}

func TestCloseStopsDelivery(t *testing.T) {
	var top Topic[string]
	s := top.Subscribe(8)
	s.Close()
	s.Close() // twice is fine
	top.Publish("x")
	if len(s.C()) != 0 || top.Len() != 0 {
		t.Fatalf("closed subscription still receives (%d queued, %d subscribers)", len(s.C()), top.Len())
	}
}

// Publishers and subscribers coming and going at once: run with -race.
func TestConcurrentUse(t *testing.T) {
	var top Topic[int]
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 2000 {
				top.Publish(i)
			}
		})
		wg.Go(func() {
			for range 200 {
				s := top.Subscribe(2)
				select {
				case <-s.C():
				default:
				}
				s.Missed()
				s.Close()
			}
		})
	}
	wg.Wait()
	if top.Len() != 0 {
		t.Fatalf("%d subscriptions left", top.Len())
	}
}
