package live

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestViewerCountAnnounceThrottled: a room whose viewer count changes 10
// times a second for a minute (a viewer or child flapping) costs the mesh
// at most one signed room record per viewerAnnounce, not one per 250 ms
// tick; the count that stays still reaches the other nodes. In a
// testing/synctest bubble, so the minute is virtual and the count exact.
func TestViewerCountAnnounceThrottled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := meshtest.NewNetwork()
		cfg := testConfig(3)
		cfg.RoomRefresh, cfg.RoomTTL = DefaultConfig().RoomRefresh, DefaultConfig().RoomTTL
		a := newTNode(t, nw, "a", cfg)
		b := newTNode(t, nw, "b", cfg)
		room, err := a.svc.Create(t.Context(), "flap", "", "")
		if err != nil {
			t.Fatal(err)
		}
		waitRoom(t, room.ID, a, b)
		const step, window = 100 * time.Millisecond, time.Minute
		records := map[uint64]bool{}
		for i := range int(window / step) {
			a.svc.mu.Lock()
			rs := a.svc.rooms[room.ID]
			if i%2 == 0 {
				rs.viewers["flap"] = &session{id: "flap", room: room.ID}
			} else {
				delete(rs.viewers, "flap")
			}
			records[a.svc.index[room.ID].room.Seq] = true
			a.svc.mu.Unlock()
			time.Sleep(step)
		}
		if most := int(window/viewerAnnounce) + 2; len(records) > most {
			t.Errorf("%d room records in %v of a flapping viewer count, want at most %d", len(records), window, most)
		}
		a.svc.mu.Lock()
		a.svc.rooms[room.ID].viewers["flap"] = &session{id: "flap", room: room.ID}
		a.svc.mu.Unlock()
		testutil.WaitFor(t, 2*viewerAnnounce, "b hearing the count of 1", func() bool {
			r, ok := b.svc.Room(room.ID)
			return ok && r.Viewers == 1
		})
		a.svc.mu.Lock()
		delete(a.svc.rooms[room.ID].viewers, "flap")
		a.svc.mu.Unlock()
	})
}

// sentCounts records the viewer counts a node sends its parent.
type sentCounts struct {
	mu     sync.Mutex
	counts []int
}

func (r *sentCounts) Send(b []byte) error {
	var tm treeMsg
	if err := json.Unmarshal(b, &tm); err != nil || tm.Viewers == nil {
		return fmt.Errorf("not a viewer count: %q", b)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = append(r.counts, *tm.Viewers)
	return nil
}

func (r *sentCounts) get() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.counts)
}

// TestViewerCountReportCoalesced: a relay whose child reports a new
// viewer count 10 times a second for a minute (a flapping viewer below)
// sends its parent at most one count per viewerReport, not one per
// change; the first change goes at once, and the count it settles on
// reaches the parent within viewerReport. In a testing/synctest bubble,
// so the minute is virtual and the count exact.
func TestViewerCountReportCoalesced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := meshtest.NewNetwork()
		b := newTNode(t, nw, "b", testConfig(3))
		const room = "flapping below"
		rs := newRoomState(room, false, time.Second)
		rs.parent = &parentLink{id: "parent", flowing: make(chan struct{}), lost: make(chan struct{})}
		sent := &sentCounts{}
		rs.parentDC = sent
		rs.reported = -1
		rs.viewers["own"] = &session{id: "own", room: room}
		child := &childLink{id: "child", room: room}
		rs.children[child.id] = child
		b.svc.mu.Lock()
		b.svc.rooms[room] = rs
		b.svc.mu.Unlock()
		// What the tree channel's OnMessage does with a child's count.
		childSays := func(n int) {
			b.svc.mu.Lock()
			child.viewers = n
			b.svc.mu.Unlock()
			b.svc.reportViewers(room)
		}

		childSays(5)
		if got := sent.get(); !slices.Equal(got, []int{6}) {
			t.Fatalf("sent %v after the first change, want [6] at once", got)
		}
		const step, window = 100 * time.Millisecond, time.Minute
		for i := range int(window / step) {
			time.Sleep(step)
			childSays(i%7 + 1)
		}
		if most := int(window/viewerReport) + 2; len(sent.get()) > most {
			t.Errorf("%d viewer counts sent in %v of a flapping child, want at most %d", len(sent.get()), window, most)
		}
		childSays(41)
		time.Sleep(viewerReport)
		synctest.Wait()
		if got := sent.get(); got[len(got)-1] != 42 {
			t.Fatalf("the parent's last count is %d, %v after the child settled on 41 (and 1 here); want 42", got[len(got)-1], viewerReport)
		}
		t.Logf("%d viewer counts sent in %v", len(sent.get()), window)
		b.svc.mu.Lock()
		delete(b.svc.rooms, room)
		b.svc.mu.Unlock()
	})
}
