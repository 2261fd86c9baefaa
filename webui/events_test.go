package webui

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// sseEvent is one parsed server-sent event; a comment line is an event
// with comment set.
type sseEvent struct {
	name, data, comment string
}

// openEvents connects to /api/events and returns the parsed events as they
// arrive; the channel closes when the stream ends. The connection is closed
// when the test ends, or earlier by cancel.
func openEvents(t *testing.T, c *http.Client, base string) (events <-chan sseEvent, cancel func()) {
	t.Helper()
	ctx, cancelReq := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	c2 := *c
	c2.Timeout = 0 // a stream has no end
	resp, err := c2.Do(req)
	if err != nil {
		cancelReq()
		t.Fatalf("GET /api/events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancelReq()
		t.Fatalf("GET /api/events: status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type %q, want text/event-stream", ct)
	}
	ch := make(chan sseEvent, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		readEvents(resp.Body, ch)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancelReq()
			resp.Body.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return ch, stop
}

func readEvents(r io.Reader, ch chan<- sseEvent) {
	sc := bufio.NewScanner(r)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev != (sseEvent{}) {
				ch <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			ev.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[len("data: "):]
		}
	}
}

// nextPeers waits for the next "peers" event and decodes it, skipping
// comments and other events.
func nextPeers(t *testing.T, events <-chan sseEvent, timeout time.Duration) []peerJSON {
	t.Helper()
	return nextArray[peerJSON](t, events, "peers", timeout)
}

func peerNames(peers []peerJSON) string {
	var names []string
	for _, p := range peers {
		names = append(names, p.Name)
	}
	return strings.Join(names, ",")
}

func newEventServer(t *testing.T, node *fakeNode, tune func(*timing)) (base string, stop func()) {
	t.Helper()
	s, err := New(Config{Addr: "127.0.0.1:0"}, node)
	if err != nil {
		t.Fatal(err)
	}
	// Long intervals unless a test shortens one, so that only what a test
	// causes arrives.
	s.timing.refresh = time.Hour
	s.timing.keepAlive = time.Hour
	if tune != nil {
		tune(&s.timing)
	}
	return serve(t, s)
}

func TestEventsInitialAndChanges(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	node.add(fakePeer("bravo", 5*time.Millisecond, true, time.Now()))
	const window = 300 * time.Millisecond
	base, _ := newEventServer(t, node, func(tm *timing) { tm.coalesce = window })
	events, _ := openEvents(t, newClient(t), base)

	if got := peerNames(nextPeers(t, events, 5*time.Second)); got != "bravo" {
		t.Fatalf("initial peers %q, want bravo", got)
	}

	node.add(fakePeer("charlie", time.Millisecond, false, time.Now()))
	if got := peerNames(nextPeers(t, events, 5*time.Second)); got != "bravo,charlie" {
		t.Fatalf("after up: peers %q, want bravo,charlie", got)
	}

	node.remove(fakeID("bravo"))
	if got := peerNames(nextPeers(t, events, 5*time.Second)); got != "charlie" {
		t.Fatalf("after down: peers %q, want charlie", got)
	}

	// A burst within the coalescing window is sent as one event with the
	// final state. The changes come back to back: spaced by sleeps, a
	// loaded machine stretched the burst past the window (3 of 80 runs
	// beside busy loops) and its last changes went out as a second event.
	for _, name := range []string{"delta", "echo", "foxtrot", "golf"} {
		node.add(fakePeer(name, time.Millisecond, false, time.Now()))
	}
	if got := peerNames(nextPeers(t, events, 5*time.Second)); got != "charlie,delta,echo,foxtrot,golf" {
		t.Fatalf("after burst: peers %q, want all five in one event", got)
	}
	select {
	case ev := <-events:
		t.Fatalf("extra event after a coalesced burst: %+v", ev)
	case <-time.After(2 * window):
	}
}

func TestEventsRefreshAndKeepAlive(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	node.add(fakePeer("bravo", 5*time.Millisecond, true, time.Now()))
	base, _ := newEventServer(t, node, func(tm *timing) {
		tm.refresh = 50 * time.Millisecond
		tm.keepAlive = 20 * time.Millisecond
	})
	events, _ := openEvents(t, newClient(t), base)
	if p := nextPeers(t, events, 5*time.Second); len(p) != 1 || p[0].RTTMs != 5 {
		t.Fatalf("initial peers %+v, want bravo at 5 ms", p)
	}

	// RTT changes without an event; the periodic refresh shows it.
	node.setRTT(fakeID("bravo"), 42*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := nextPeers(t, events, 5*time.Second)
		if len(p) == 1 && p[0].RTTMs == 42 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refresh never showed the new RTT; last %+v", p)
		}
	}

	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.comment != "" {
				return
			}
		case <-timeout:
			t.Fatal("no keep-alive comment")
		}
	}
}

func TestEventsEndOnShutdown(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	base, stop := newEventServer(t, node, nil)
	events, _ := openEvents(t, newClient(t), base)
	nextPeers(t, events, 5*time.Second)
	if n := node.subscribers(); n != 2 {
		t.Fatalf("%d subscriptions while streaming, want 2 (peers and directory)", n)
	}

	// Serve's context ends: the stream must end at once, not when the
	// shutdown grace period runs out.
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Serve took %v to return with an open event stream", d)
	}
	timeout := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-events:
		case <-timeout:
			t.Fatal("event stream still open after shutdown")
		}
	}
	if n := node.subscribers(); n != 0 {
		t.Errorf("%d subscriptions left after shutdown, want 0", n)
	}
}

func TestEventsEndOnDisconnect(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	base, _ := newEventServer(t, node, nil)
	c := newClient(t)
	for range 3 {
		events, cancel := openEvents(t, c, base)
		nextPeers(t, events, 5*time.Second)
		cancel()
	}
	testutil.WaitFor(t, 5*time.Second, "no subscriptions left after the clients went away", func() bool {
		return node.subscribers() == 0
	})
}

func TestEventsHead(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	base, _ := newEventServer(t, node, nil)
	resp, _ := do(t, newClient(t), newRequest(t, "HEAD", base+"/api/events"))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Errorf("HEAD /api/events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if n := node.subscribers(); n != 0 {
		t.Errorf("HEAD left %d subscriptions", n)
	}
}
