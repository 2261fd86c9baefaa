package calls

import (
	"context"
	"sync"

	"github.com/catnest/catnest/mesh"
)

// Outbox: the messages a node sends on its own account (an owner's
// notices and probes, a page's leave) wait in one lane per destination,
// each sent from by a goroutine of its own while it has messages, so that
// a destination that never answers (hung, or hostile: it can hold seats
// and so be owed notices at will) holds back only the messages to itself,
// each for up to Config.RequestTimeout, and never those to anyone else.

const (
	// maxJobs bounds the messages waiting to be sent, and so the lanes
	// and their goroutines; maxJobsPerDest, those to one destination.
	// Beyond, a message is dropped, and the renewals and leases set
	// things right.
	maxJobs        = 1024
	maxJobsPerDest = 64
)

type outbox struct {
	mu     sync.Mutex
	lanes  map[mesh.ID]*outLane
	queued int
	// kick wakes Serve to start a sender for a lane that has none.
	kick chan struct{}
}

type outLane struct {
	jobs    []func(context.Context)
	running bool
}

func newOutbox() *outbox {
	return &outbox{lanes: make(map[mesh.ID]*outLane), kick: make(chan struct{}, 1)}
}

// push queues job for to, or reports false when the queue or to's lane
// is full.
func (o *outbox) push(to mesh.ID, job func(context.Context)) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.lanes[to]
	if o.queued >= maxJobs || l != nil && len(l.jobs) >= maxJobsPerDest {
		return false
	}
	if l == nil {
		l = &outLane{}
		o.lanes[to] = l
	}
	l.jobs = append(l.jobs, job)
	o.queued++
	if !l.running {
		select {
		case o.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// idle marks the lanes that have messages and no sender as sent from, and
// returns their destinations.
func (o *outbox) idle() []mesh.ID {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []mesh.ID
	for to, l := range o.lanes {
		if !l.running && len(l.jobs) > 0 {
			l.running = true
			out = append(out, to)
		}
	}
	return out
}

// pop takes the next message for to. With none left, the lane is
// forgotten and its sender must stop.
func (o *outbox) pop(to mesh.ID) func(context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.lanes[to]
	if l == nil {
		return nil
	}
	if len(l.jobs) == 0 {
		delete(o.lanes, to)
		return nil
	}
	job := l.jobs[0]
	l.jobs[0] = nil
	l.jobs = l.jobs[1:]
	o.queued--
	return job
}

// sendOut sends what waits for to, one message after the other, until
// its lane is empty.
func (s *Service) sendOut(ctx context.Context, to mesh.ID) {
	for job := s.out.pop(to); job != nil; job = s.out.pop(to) {
		job(ctx)
	}
}
