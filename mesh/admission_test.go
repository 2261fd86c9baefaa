package mesh_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestAdmissionBurst: 30 nodes dial a hub (HighPeers 8, MaxTemporary 3)
// at once, some for temporary links, while the hub dials 8 nodes itself,
// four of them among those that dial it. Sampled continuously through the
// burst, neither the hub nor its peers ever count more links to the hub
// than its limits: 8 ordinary links, 11 in all. Every dial that succeeded
// leaves a link that both ends hold. Before, the hub's own dials could
// register into the slots that inbound links in their hello had reserved;
// those links, already counted by their dialers, were then dropped.
func TestAdmissionBurst(t *testing.T) {
	testutil.CheckGoroutines(t)
	const (
		high, temporary = 8, 3
		dialers, outs   = 30, 8
		expanders       = 10 // of the dialers, those that ask for a temporary link
		rounds          = 3
	)
	nw := meshtest.NewNetwork()
	conf := func(c *mesh.Config) {
		c.ManualLinks = true
		c.TargetPeers, c.LowPeers, c.HighPeers = 4, 2, high
		c.MaxTemporary = temporary
	}
	hub := nw.NewNode(t, "hub", meshtest.Options{Configure: conf, Logger: testLogger(t)})
	var nodes []*mesh.Node
	for range dialers + outs/2 {
		nodes = append(nodes, nw.NewNode(t, "n", meshtest.Options{Configure: conf}))
	}
	// The hub dials the last four nodes and four of the dialers.
	targets := append(append([]*mesh.Node(nil), nodes[dialers:]...), nodes[:outs/2]...)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// counts is what the hub's links look like from one side: all of
	// them, and those that are not temporary.
	type counts struct{ all, ordinary int }
	fromHub := func() counts {
		var c counts
		for _, p := range hub.Peers() {
			c.all++
			if !p.Temporary {
				c.ordinary++
			}
		}
		return c
	}
	fromPeers := func() counts {
		var c counts
		for _, n := range nodes {
			for _, p := range n.Peers() {
				if p.ID == hub.ID() {
					c.all++
					if !p.Temporary {
						c.ordinary++
					}
				}
			}
		}
		return c
	}
	over := func(c counts) bool { return c.all > high+temporary || c.ordinary > high }

	// burst runs one round and reports whether it passed.
	burst := func(t *testing.T, ctx context.Context, round int) bool {
		start := make(chan struct{})
		var (
			mu     sync.Mutex
			linked = map[mesh.ID]bool{} // the nodes a dial linked to the hub
			wg     sync.WaitGroup
		)
		dial := func(from, to *mesh.Node, peer mesh.ID, temp bool) {
			wg.Go(func() {
				<-start
				var err error
				if temp {
					err = from.Expand(ctx, to.ID())
				} else {
					err = from.Connect(ctx, to.ID())
				}
				if err == nil {
					mu.Lock()
					linked[peer] = true
					mu.Unlock()
				}
			})
		}
		for i, n := range nodes[:dialers] {
			dial(n, hub, n.ID(), i >= dialers-expanders)
		}
		for i, n := range targets {
			dial(hub, n, n.ID(), i == 0)
		}

		// Sample from the start of the burst until both ends hold every
		// link a dial made: at each change of a link to or from the hub,
		// of which the nodes tell their subscribers, rather than in a
		// spin that would take a core from the burst.
		stopSampling := make(chan struct{})
		var worstHub, worstPeers counts
		var samples int
		sampled := make(chan struct{})
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(stopSampling)}}
		for _, n := range append([]*mesh.Node{hub}, nodes...) {
			events, unsubscribe := n.SubscribePeers()
			defer unsubscribe()
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(events)})
		}
		go func() {
			defer close(sampled)
			for {
				h, p := fromHub(), fromPeers()
				samples++
				if over(h) {
					worstHub = h
				}
				if over(p) {
					worstPeers = p
				}
				if chosen, _, _ := reflect.Select(cases); chosen == 0 {
					return
				}
			}
		}()
		close(start)
		wg.Wait()
		// The last links register on their far end after the dialer's
		// Connect returned: wait for both ends of every one.
		oneSided := func() (n int) {
			for _, o := range nodes {
				if linked[o.ID()] && (!hasPeer(hub, o.ID()) || !hasPeer(o, hub.ID())) {
					n++
				}
			}
			return n
		}
		deadline := time.Now().Add(30 * time.Second)
		for oneSided() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		close(stopSampling)
		<-sampled
		if n := oneSided(); n > 0 {
			t.Errorf("round %d: %d of the %d links that dials made are not held by both ends", round, n, len(linked))
		}
		if worstHub != (counts{}) {
			t.Errorf("round %d: the hub held %d links, %d of them ordinary; limits %d and %d", round, worstHub.all, worstHub.ordinary, high+temporary, high)
		}
		if worstPeers != (counts{}) {
			t.Errorf("round %d: the hub's peers held %d links to it, %d of them ordinary; limits %d and %d", round, worstPeers.all, worstPeers.ordinary, high+temporary, high)
		}
		h := fromHub()
		if h.all != len(linked) {
			t.Errorf("round %d: %d dials succeeded, the hub holds %d links", round, len(linked), h.all)
		}
		if h.all < high {
			t.Errorf("round %d: the hub took only %d links of %d dials", round, h.all, dialers+outs)
		}
		t.Logf("round %d: %d links, %d samples", round, len(linked), samples)
		if t.Failed() {
			return false
		}
		for _, p := range hub.Peers() {
			hub.Disconnect(p.ID)
		}
		closeBy := time.Now().Add(30 * time.Second)
		for len(hub.Peers()) != 0 || fromPeers() != (counts{}) {
			if time.Now().After(closeBy) {
				var atHub, atPeers []string
				for _, p := range hub.Peers() {
					atHub = append(atHub, fmt.Sprintf("%s(temp %v, since %v)", p.ID.Short(), p.Temporary, time.Since(p.Since).Round(time.Millisecond)))
				}
				for _, n := range nodes {
					for _, p := range n.Peers() {
						if p.ID == hub.ID() {
							atPeers = append(atPeers, fmt.Sprintf("%s(temp %v, since %v)", n.ID().Short(), p.Temporary, time.Since(p.Since).Round(time.Millisecond)))
						}
					}
				}
				t.Fatalf("round %d: 30 s after the hub disconnected its peers, the hub still links to %v; peers that still link to the hub: %v", round, atHub, atPeers)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return true
	}
	for round := range rounds {

		if !burst(t, ctx, round) {
			return
		}
	}
}
