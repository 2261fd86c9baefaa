package webui

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/catnest/catnest/live"
	"github.com/catnest/catnest/mesh"
)

// fakeLive is a Live with one room, "r1", whose WHIP token is liveToken.
// It records the calls that reached it, so that a test can tell that a
// refused request changed nothing.
type fakeLive struct {
	mu    sync.Mutex
	calls []string
	// watchErr is what Watch returns, if not nil.
	watchErr error
	// children are the nodes Tree says this node relays to.
	children []mesh.ID
	// answer, when set, makes Watch's answer to a browser's offer, for a
	// page that must get as far as watching.
	answer func(offer string) (string, error)
	// rooms, when set, are the rooms instead of "r1"; children are then
	// per room, in roomChildren.
	rooms        []live.Room
	roomChildren map[string][]mesh.ID
	// watchGate, when it has a room, holds Watch for that room until the
	// channel is closed: a browser's WHEP offer still on its way.
	watchGate map[string]chan struct{}
}

const liveToken = "roomtoken0123"

func (f *fakeLive) call(c string) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func (f *fakeLive) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeLive) Rooms() []live.Room {
	if f.rooms != nil {
		return f.rooms
	}
	return []live.Room{{ID: "r1", Title: "room", Live: true}}
}
func (f *fakeLive) Room(id string) (live.Room, bool) {
	for _, r := range f.Rooms() {
		if r.ID == id {
			return r, true
		}
	}
	return live.Room{}, false
}
func (f *fakeLive) Create(ctx context.Context, title, description, chat string) (live.Created, error) {
	f.call("create")
	return live.Created{Room: live.Room{ID: "r2", Title: title, Live: true, Chat: chat}, Token: "t"}, nil
}
func (f *fakeLive) End(ctx context.Context, id string) error {
	f.call("end " + id)
	return nil
}
func (f *fakeLive) SetCover(ctx context.Context, id string, img []byte) error {
	f.call("setcover " + id)
	return nil
}
func (f *fakeLive) Cover(ctx context.Context, id string) ([]byte, error) { return nil, nil }
func (f *fakeLive) Publish(ctx context.Context, room, token, offer string) (string, string, error) {
	f.call("publish " + room)
	if room != "r1" {
		return "", "", live.ErrUnknownRoom
	}
	if token != liveToken {
		return "", "", live.ErrBadToken
	}
	return "v=0 answer", "pSESSION", nil
}
func (f *fakeLive) Watch(ctx context.Context, room, offer string) (string, string, error) {
	f.call("watch " + room)
	if g := f.watchGate[room]; g != nil {
		select {
		case <-g:
		case <-ctx.Done():
			return "", "", ctx.Err()
		}
	}
	if f.watchErr != nil {
		return "", "", f.watchErr
	}
	if f.answer != nil {
		a, err := f.answer(offer)
		return a, "vSESSION", err
	}
	return "v=0 answer", "vSESSION", nil
}
func (f *fakeLive) Stop(room, session string) error {
	f.call("stop " + room + " " + session)
	return nil
}
func (f *fakeLive) Tree(room string) (live.TreeInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	children := f.children
	if f.rooms != nil {
		children = f.roomChildren[room]
	}
	return live.TreeInfo{Room: room, Host: true, Children: append([]mesh.ID{}, children...)}, nil
}

func (f *fakeLive) setChildren(ids ...mesh.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.children = ids
}
func (f *fakeLive) Fanout() int                          { return 3 }
func (f *fakeLive) Subscribe() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }
func (f *fakeLive) sdp() *strings.Reader                 { return strings.NewReader("v=0 offer") }
func (f *fakeLive) String() string                       { return fmt.Sprint(f.called()) }
func (f *fakeLive) reset()                               { f.mu.Lock(); f.calls = nil; f.mu.Unlock() }
func (f *fakeLive) only(t *testing.T, want ...string) {
	t.Helper()
	if got := f.called(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("calls reaching the service: %q, want %q", got, want)
	}
}

// TestLiveAuth checks who may publish and watch over WHIP and WHEP: a WHIP
// client with the room's token, from anywhere (that is what the token is
// for); a WHEP player without an Origin, which off loopback needs the
// node's token or API key; never a page of another site; and that the
// way past the usual checks leads to those two endpoints only.
func TestLiveAuth(t *testing.T) {
	checkGoroutines(t)
	for _, tc := range []struct {
		name, addr, token string
	}{
		{"loopback", "127.0.0.1:0", ""},
		{"with token", "0.0.0.0:7070", "s3cret-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lv := &fakeLive{}
			s, err := New(Config{Addr: tc.addr, Token: tc.token, APIKey: testAPIKey, Live: lv}, newFakeNode("alpha"))
			if err != nil {
				t.Fatal(err)
			}
			base, _ := serve(t, s)
			c := newClient(t)
			send := func(method, path, ctype string, header map[string]string) (int, string) {
				t.Helper()
				req, err := http.NewRequest(method, base+path, lv.sdp())
				if err != nil {
					t.Fatal(err)
				}
				if ctype != "" {
					req.Header.Set("Content-Type", ctype)
				}
				for k, v := range header {
					req.Header.Set(k, v)
				}
				resp, body := do(t, c, req)
				return resp.StatusCode, string(body)
			}
			const whip, whep = "/api/live/rooms/r1/whip", "/api/live/rooms/r1/whep"
			bearer := func(v string) map[string]string { return map[string]string{"Authorization": "Bearer " + v} }
			evil := map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}

			// WHIP: the room's token, and nothing else, lets a publisher in.
			for _, r := range []struct {
				name   string
				header map[string]string
				status int
				calls  []string
			}{
				{"no token", nil, http.StatusUnauthorized, nil},
				{"wrong token", bearer("nope"), http.StatusUnauthorized, []string{"publish r1"}},
				{"the API key is not the room's token", bearer(testAPIKey), http.StatusUnauthorized, []string{"publish r1"}},
				{"room token", bearer(liveToken), http.StatusCreated, []string{"publish r1"}},
			} {
				lv.reset()
				if st, body := send("POST", whip, "application/sdp", r.header); st != r.status {
					t.Fatalf("WHIP %s: status %d, want %d; %s", r.name, st, r.status, body)
				}
				lv.only(t, r.calls...)
			}
			if st, body := send("POST", whip, "text/plain", bearer(liveToken)); st != http.StatusUnsupportedMediaType {
				t.Fatalf("WHIP as text/plain: status %d; %s", st, body)
			}

			// WHEP: another site's page is refused; a player without an
			// Origin gets in on loopback, off loopback with the token or
			// the API key.
			lv.reset()
			refused := func(st int) bool { return st == http.StatusForbidden || st == http.StatusUnauthorized }
			if st, body := send("POST", whep, "application/sdp", evil); !refused(st) {
				t.Fatalf("WHEP from another site: status %d; %s", st, body)
			}
			if st, body := send("POST", whep, "application/sdp", map[string]string{"Origin": "null"}); !refused(st) {
				t.Fatalf("WHEP from an opaque origin: status %d; %s", st, body)
			}
			if st, body := send("DELETE", "/api/live/rooms/r1/whep/vSESSION", "", evil); !refused(st) {
				t.Fatalf("WHEP stop from another site: status %d; %s", st, body)
			}
			lv.only(t)
			st, body := send("POST", whep, "application/sdp", nil)
			if tc.token != "" {
				if st != http.StatusUnauthorized {
					t.Fatalf("WHEP without the token off loopback: status %d; %s", st, body)
				}
				lv.only(t)
				for _, h := range []map[string]string{bearer(tc.token), bearer(testAPIKey), {"X-API-Key": testAPIKey}} {
					if st, body := send("POST", whep, "application/sdp", h); st != http.StatusCreated {
						t.Fatalf("WHEP with %v: status %d; %s", h, st, body)
					}
				}
			} else if st != http.StatusCreated {
				t.Fatalf("WHEP on loopback: status %d; %s", st, body)
			}

			// Nothing else goes past the checks: the other live routes,
			// and paths that only look like WHIP or WHEP once decoded.
			lv.reset()
			for _, r := range []struct{ method, path string }{
				{"DELETE", "/api/live/rooms/r1"},
				{"PUT", "/api/live/rooms/r1/cover"},
				{"POST", "/api/live/rooms"},
				{"DELETE", "/api/live/rooms/r1%2Fwhip"},
				{"DELETE", "/api/live/rooms/r1%2Fwhep"},
				{"PUT", "/api/live/rooms/r1%2Fwhip/cover"},
				{"PUT", "/api/live/rooms/r1%2Fwhep/cover"},
				{"POST", "/api/live/rooms/r1/whip/x"},
			} {
				for _, h := range []map[string]string{nil, bearer(liveToken)} {
					st, body := send(r.method, r.path, "application/sdp", h)
					if st < 400 {
						t.Fatalf("%s %s with %v: status %d; %s", r.method, r.path, h, st, body)
					}
				}
			}
			lv.only(t)
		})
	}
}

// TestLiveWHEPBusy: a node at its viewer limit answers a WHEP request with
// 503 and says why, not with an internal error.
func TestLiveWHEPBusy(t *testing.T) {
	checkGoroutines(t)
	lv := &fakeLive{watchErr: fmt.Errorf("%w: 64 viewers, limit 64; watch from another node", live.ErrBusy)}
	base := startServer(t, Config{Live: lv}, newFakeNode("alpha"))
	req, err := http.NewRequest("POST", base+"/api/live/rooms/r1/whep", lv.sdp())
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, body := do(t, newClient(t), req)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "limit 64") {
		t.Fatalf("WHEP at the viewer limit: %s %s; want 503 saying the limit", resp.Status, body)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After on a 503")
	}
}
