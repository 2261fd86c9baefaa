package chatlog

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// scrubNode is a chat service on a one-node mesh, serving, over the
// database file at path.
type scrubNode struct {
	svc   *Service
	store *Store
	db    *bbolt.DB
	stop  func()
}

// serveAt opens the database at path and serves a chat service over it
// until stop (or the end of the test). The mmap is made large enough at
// once that no write waits for a test's open read transaction to remap.
func serveAt(t *testing.T, path string, ident *mesh.Identity) *scrubNode {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second, InitialMmapSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	store, err := OpenStore(db)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	n := meshtest.NewNetwork().NewNode(t, "solo", meshtest.Options{Configure: func(c *mesh.Config) { c.Identity = ident }})
	cfg := DefaultServiceConfig()
	cfg.Identity = ident
	cfg.PruneInterval = 100 * time.Millisecond
	svc, err := NewService(cfg, n, store)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Serve(ctx); close(done) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			db.Close()
		}
	}
	t.Cleanup(stop)
	return &scrubNode{svc: svc, store: store, db: db, stop: stop}
}

// fillChannel stores 3,000 messages in channel ch, some of them holding
// marker, and returns them.
func fillChannel(t *testing.T, s *Store, ch ChannelID, marker string) []*Message {
	t.Helper()
	alice := newIdent(t)
	start := time.Now().Add(-time.Hour).UnixMilli()
	var ms []*Message
	for i := range 3000 {
		body := fmt.Sprintf("message %d %s", i, strings.Repeat("y", i%200))
		if i%500 == 7 {
			body = fmt.Sprintf("%s %d", marker, i)
		}
		ms = append(ms, msgAt(t, alice, ch, KindText, body, ID{}, start+int64(i)))
		if len(ms)%300 == 0 {
			mustPut(t, s, ms[len(ms)-300:]...)
		}
	}
	return ms
}

// TestScrubDueAfterCrash deletes the history of a channel that turns to
// burn-after-read, and the process ends before the scrub of the file:
// the next start scrubs it, so the bytes of the burnt messages do not stay
// in free pages for good.
func TestScrubDueAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catnest.db")
	owner := newIdent(t)
	// No service yet: it would scrub as soon as the scrub is due.
	db := openDB(t, path)
	s, err := OpenStore(db)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	c := NewChannel(owner.ID, "soon secret")
	c.Joined = true
	if err := s.PutChannel(c); err != nil {
		db.Close()
		t.Fatal(err)
	}
	marker := fmt.Sprintf("crash-marker-%x", time.Now().UnixNano())
	fillChannel(t, s, c.ID, marker)
	// The deletion commits; the process dies before its scrub.
	err = db.Update(func(tx *bbolt.Tx) error {
		_, err := forgetTx(tx, c.ID)
		return err
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !fileHas(t, path, []byte(marker)) {
		t.Fatal("the marker is not in the file after the deletion: the check is broken")
	}

	serveAt(t, path, owner)
	testutil.WaitFor(t, 30*time.Second, "the marker to leave the file after a restart", func() bool { return !fileHas(t, path, []byte(marker)) })
}

// TestScrubWaitsForReaders switches burn on while a read transaction holds
// the pages the deletion freed, as a sync that is serving the channel
// does: the scrub cannot write them then, and must not report itself done;
// once the reader ends, the bytes leave the file.
func TestScrubWaitsForReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catnest.db")
	n := serveAt(t, path, newIdent(t))
	ctx := context.Background()
	info, err := n.svc.CreateChannel(ctx, "soon secret", false)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := ParseChannelID(info.ID)
	marker := fmt.Sprintf("reader-marker-%x", time.Now().UnixNano())
	fillChannel(t, n.store, ch, marker)

	reader, err := n.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	burn := true
	err = n.svc.SetSettings(ctx, info.ID, nil, &burn)
	if rerr := reader.Rollback(); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if u, err := n.store.Usage(ch); err != nil || u != (Usage{}) {
		t.Fatalf("usage after burn %+v, %v", u, err)
	}
	testutil.WaitFor(t, 30*time.Second, "the marker to leave the file once the reader is done", func() bool { return !fileHas(t, path, []byte(marker)) })
}
