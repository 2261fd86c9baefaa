package chatlog

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/mesh"
)

// TestSyncLocalFailureScoresNobody: a newcomer whose disk fills while it
// syncs a history of 5,000 messages fails the sync, but does not score the
// peer that served the history down for it: penalties ban, and a full
// disk would have had the node ban every peer it syncs with.
func TestSyncLocalFailureScoresNobody(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	owner := newIdent(t)
	c := NewChannel(owner.ID, "archive")
	start := time.Now().Add(-2 * time.Hour).UnixMilli()
	alice, _ := routedService(t, "alice", c)
	for i := 0; i < 5000; i += 500 {
		var batch []*Message
		for j := i; j < i+500; j++ {
			batch = append(batch, msgAt(t, owner, c.ID, KindText, fmt.Sprint("message ", j), ID{}, start+int64(j)*1000))
		}
		mustPut(t, alice.store, batch...)
	}

	// Bob's database may not grow past 1 MiB: a full disk.
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "catnest.db"), 0o600, &bbolt.Options{Timeout: 2 * time.Second, MaxSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	c.Joined = true
	if err := store.PutChannel(c); err != nil {
		t.Fatal(err)
	}
	bm := &routeMesh{id: "bob", peers: map[mesh.ID]func(context.Context, []byte) ([]byte, error){}, penalties: map[mesh.ID]int{}}
	bob := &Service{cfg: DefaultServiceConfig(), mesh: bm, store: store, log: slog.New(slog.DiscardHandler),
		sessions: map[string]*responder{}, syncing: map[syncKey]bool{}}
	bm.handle("alice", serveAs(alice, "bob"))

	if err := bob.syncOnce(ctx, c.ID, "alice"); err == nil {
		items, _ := store.Items(c.ID, 0)
		t.Fatalf("the sync stored %d messages in a database of at most 1 MiB and did not fail", len(items))
	}
	if n := bm.penalized("alice"); n > 0 {
		t.Fatalf("alice was scored down %d times for bob's full disk", n)
	}
}
