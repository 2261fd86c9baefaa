package webui

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

// fakeNode is a Node whose peers a test sets by hand. It is safe for
// concurrent use. Tests of a real mesh can pass a *mesh.Node instead.
type fakeNode struct {
	id   mesh.ID
	name string

	mu      sync.Mutex
	peers   map[mesh.ID]mesh.PeerInfo
	subs    map[chan mesh.PeerEvent]struct{}
	dir     map[mesh.ID]mesh.Record
	dirSubs map[chan struct{}]struct{}
	// copied counts the directory records handed out, by Directory and
	// Lookup: what reading the directory costs the real node.
	copied int
}

var (
	_ Node = (*fakeNode)(nil)
	_ Node = (*mesh.Node)(nil) // cmd/catnest passes the real node
)

func newFakeNode(name string) *fakeNode {
	return &fakeNode{
		id:      fakeID(name),
		name:    name,
		peers:   map[mesh.ID]mesh.PeerInfo{},
		subs:    map[chan mesh.PeerEvent]struct{}{},
		dir:     map[mesh.ID]mesh.Record{},
		dirSubs: map[chan struct{}]struct{}{},
	}
}

// fakeID derives a well-formed node ID from a name.
func fakeID(name string) mesh.ID {
	sum := sha256.Sum256([]byte(name))
	enc := base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	return mesh.ID(enc.EncodeToString(sum[:20]))
}

// fakePeer is a peer named name that connected at since with the given RTT.
func fakePeer(name string, rtt time.Duration, outbound bool, since time.Time) mesh.PeerInfo {
	return mesh.PeerInfo{ID: fakeID(name), Name: name, RTT: rtt, Outbound: outbound, Since: since}
}

func (f *fakeNode) ID() mesh.ID  { return f.id }
func (f *fakeNode) Name() string { return f.name }

func (f *fakeNode) Peers() []mesh.PeerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]mesh.PeerInfo, 0, len(f.peers))
	for _, p := range f.peers {
		out = append(out, p)
	}
	return out
}

func (f *fakeNode) SubscribePeers() (<-chan mesh.PeerEvent, func()) {
	ch := make(chan mesh.PeerEvent, 16)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, ch)
			f.mu.Unlock()
		})
	}
}

// subscribers is the number of subscriptions not yet cancelled, of peers
// and of the directory together.
func (f *fakeNode) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs) + len(f.dirSubs)
}

// Directory returns the records in no particular order (the real node
// sorts them; the server must not rely on it).
func (f *fakeNode) Directory() []mesh.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]mesh.Record, 0, len(f.dir))
	for _, r := range f.dir {
		out = append(out, r)
	}
	f.copied += len(out)
	return out
}

func (f *fakeNode) Lookup(id mesh.ID) (mesh.Record, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.dir[id]
	if ok {
		f.copied++
	}
	return r, ok
}

// recordsCopied returns how many directory records Directory and Lookup
// have handed out.
func (f *fakeNode) recordsCopied() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.copied
}

func (f *fakeNode) SubscribeDirectory() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.dirSubs[ch] = struct{}{}
	f.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.dirSubs, ch)
			f.mu.Unlock()
		})
	}
}

// setRecords adds or replaces directory records and tells subscribers once.
func (f *fakeNode) setRecords(recs ...mesh.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range recs {
		f.dir[r.ID] = r
	}
	f.notifyDirectory()
}

// removeRecord drops a node from the directory and tells subscribers.
func (f *fakeNode) removeRecord(id mesh.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.dir, id)
	f.notifyDirectory()
}

// notifyDirectory signals every directory subscriber, coalescing like the
// real node. f.mu is held.
func (f *fakeNode) notifyDirectory() {
	for ch := range f.dirSubs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// fakeRecord is the record of the node called name, linked to the nodes
// called neighbors, offering resources (service → JSON text).
func fakeRecord(name string, heard time.Time, resources map[string]string, neighbors ...string) mesh.Record {
	r := mesh.Record{ID: fakeID(name), Name: name, Seq: 1, Heard: heard}
	for _, n := range neighbors {
		r.Neighbors = append(r.Neighbors, fakeID(n))
	}
	if resources != nil {
		r.Resources = map[string]json.RawMessage{}
		for k, v := range resources {
			r.Resources[k] = json.RawMessage(v)
		}
	}
	return r
}

// add brings a link up (or updates it) and tells subscribers.
func (f *fakeNode) add(p mesh.PeerInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers[p.ID] = p
	f.notify(mesh.PeerEvent{Kind: mesh.PeerUp, Peer: p})
}

// remove takes a link down and tells subscribers.
func (f *fakeNode) remove(id mesh.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.peers[id]
	if !ok {
		return
	}
	delete(f.peers, id)
	f.notify(mesh.PeerEvent{Kind: mesh.PeerDown, Peer: p})
}

// setRTT changes a peer's round-trip time silently, as a real node does.
func (f *fakeNode) setRTT(id mesh.ID, rtt time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.peers[id]
	p.RTT = rtt
	f.peers[id] = p
}

// notify sends ev to every subscriber, dropping it for those that are full,
// like the real node. f.mu is held.
func (f *fakeNode) notify(ev mesh.PeerEvent) {
	for ch := range f.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// serve runs s.Serve on a fresh loopback listener until the test ends (or
// stop is called) and returns the base URL. stop waits for Serve to return
// and fails the test if it returned an error.
func serve(t testing.TB, s *Server) (baseURL string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Serve returned %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Serve did not return within 10s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

// newClient returns an HTTP client of its own, whose idle connections are
// closed when the test ends.
func newClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		Timeout:   10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// checkGoroutines fails the test if, when it ends, goroutines of this
// package, of HTTP connections or of chromedp are still running. Call it
// first, so that its check runs after every other cleanup.
func checkGoroutines(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		var left []string
		deadline := time.Now().Add(5 * time.Second)
		for {
			left = leftGoroutines()
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(left) > 0 {
			t.Errorf("%d goroutines left running:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
	})
}

func leftGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	stacks := strings.Split(string(buf), "\n\n")
	var left []string
	for _, st := range stacks[1:] { // the first is this goroutine
		if strings.Contains(st, "catnest/catnest/webui.") ||
			strings.Contains(st, "net/http.(*conn).serve") ||
			strings.Contains(st, "net/http.(*persistConn)") ||
			strings.Contains(st, "chromedp") {
			left = append(left, st)
		}
	}
	return left
}

// errAny is a sentinel for tables that only care that an error happened.
var errAny = errors.New("any error")
