package live

import (
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
