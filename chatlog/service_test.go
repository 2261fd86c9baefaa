package chatlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// chatNode is a mesh node with a chat service and its own data dir.
type chatNode struct {
	*chatlog.Service
	node  *mesh.Node
	ident *mesh.Identity
	store *chatlog.Store
	dir   string
}

func newChatNode(t *testing.T, nw *meshtest.Network, name string, configure ...func(*mesh.Config)) *chatNode {
	return newChatNodeWith(t, nw, name, nil, configure...)
}

func newChatNodeWith(t *testing.T, nw *meshtest.Network, name string, svc func(*chatlog.ServiceConfig), configure ...func(*mesh.Config)) *chatNode {
	t.Helper()
	return newChatNodeOn(t, nw, name, &bbolt.Options{Timeout: time.Second}, svc, configure...)
}

// newChatNodeOn is newChatNodeWith with the database opened with opts.
func newChatNodeOn(t *testing.T, nw *meshtest.Network, name string, opts *bbolt.Options, svc func(*chatlog.ServiceConfig), configure ...func(*mesh.Config)) *chatNode {
	t.Helper()
	ident, err := mesh.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Cleanups run last first: the database, opened before the node, is
	// closed after the node and the service have stopped using it.
	db, err := bbolt.Open(filepath.Join(dir, "catnest.db"), 0o600, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	n := nw.NewNode(t, name, meshtest.Options{Configure: func(c *mesh.Config) {
		c.Identity = ident
		meshtest.Fast(c)
		for _, f := range configure {
			f(c)
		}
	}})
	store, err := chatlog.OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	cfg := chatlog.DefaultServiceConfig()
	cfg.Identity = ident
	cfg.SyncInterval = 500 * time.Millisecond
	cfg.SyncTimeout = 10 * time.Second
	if svc != nil {
		svc(&cfg)
	}
	service, err := chatlog.NewService(cfg, n, store)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { service.Serve(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &chatNode{Service: service, node: n, ident: ident, store: store, dir: dir}
}

func texts(t *testing.T, n *chatNode, ch string) []string {
	t.Helper()
	ms, err := n.Messages(context.Background(), ch, time.Time{}, 500)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		if m.Retracted {
			out = append(out, "(retracted)")
		} else {
			out = append(out, m.Text)
		}
	}
	return out
}

func hasTexts(t *testing.T, n *chatNode, ch string, want ...string) bool {
	got := texts(t, n, ch)
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// joinWhenSeen joins a channel as soon as the directory shows it.
func joinWhenSeen(t *testing.T, n *chatNode, ch string) {
	t.Helper()
	ctx := context.Background()
	// Generous: a channel's record reaches a node of a big mesh on a
	// loaded machine in seconds.
	testutil.WaitFor(t, 30*time.Second, n.node.Name()+" to join "+ch, func() bool {
		err := n.Join(ctx, ch)
		if err != nil && !errors.Is(err, chatlog.ErrUnknownChannel) {
			t.Fatal(err)
		}
		return err == nil
	})
}

func TestHistoryToNewcomerFromNonAuthors(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNode(t, nw, "alice")
	bob := newChatNode(t, nw, "bob")
	ch := createChannel(t, ctx, alice, "lobby")
	joinWhenSeen(t, bob, ch.ID)
	want := postTexts(t, ctx, alice, ch.ID, "history ", 20)
	testutil.WaitFor(t, 10*time.Second, "bob to have alice's history", func() bool { return hasTexts(t, bob, ch.ID, want...) })

	// Alice, the only author, leaves for good; a newcomer still gets
	// everything, from bob.
	nw.Kill(alice.node.ID())
	carol := newChatNode(t, nw, "carol")
	joinWhenSeen(t, carol, ch.ID)
	testutil.WaitFor(t, 15*time.Second, "carol to get the history from bob", func() bool { return hasTexts(t, carol, ch.ID, want...) })
	got := texts(t, carol, ch.ID)
	if !slices.Equal(got, want) {
		t.Fatalf("carol's history %q, want %q in order", got, want)
	}
}

func TestPartitionConverges(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	nodes := []*chatNode{newChatNode(t, nw, "a"), newChatNode(t, nw, "b"), newChatNode(t, nw, "c"), newChatNode(t, nw, "d")}
	ch := createChannel(t, ctx, nodes[0], "team")
	for _, n := range nodes[1:] {
		joinWhenSeen(t, n, ch.ID)
	}
	nw.Partition([]mesh.ID{nodes[0].node.ID(), nodes[1].node.ID()}, []mesh.ID{nodes[2].node.ID(), nodes[3].node.ID()})
	testutil.WaitFor(t, 10*time.Second, "the partition to cut every cross link", func() bool {
		for _, p := range nodes[0].node.Peers() {
			if p.ID == nodes[2].node.ID() || p.ID == nodes[3].node.ID() {
				return false
			}
		}
		for _, p := range nodes[1].node.Peers() {
			if p.ID == nodes[2].node.ID() || p.ID == nodes[3].node.ID() {
				return false
			}
		}
		return true
	})
	var want []string
	for i, n := range nodes {
		for j := range 5 {
			text := fmt.Sprintf("%s during the partition %d", n.node.Name(), j)
			if _, err := n.Post(ctx, ch.ID, text); err != nil {
				t.Fatal(err)
			}
			want = append(want, text)
		}
		_ = i
	}
	time.Sleep(500 * time.Millisecond)
	if hasTexts(t, nodes[0], ch.ID, "c during the partition 0") {
		t.Fatal("a message crossed the partition")
	}
	nw.Heal()
	for _, n := range nodes {
		testutil.WaitFor(t, 20*time.Second, n.node.Name()+" to converge after the partition", func() bool { return hasTexts(t, n, ch.ID, want...) })
	}
}

func TestRangeRespected(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNode(t, nw, "alice")
	ch := createChannel(t, ctx, alice, "archive")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	// Alice holds old history: ten days and two days old.
	old := map[string]time.Time{"ten days ago": time.Now().Add(-240 * time.Hour), "two days ago": time.Now().Add(-48 * time.Hour)}
	for text, when := range old {
		m, err := chatlog.NewMessage(alice.ident, cid, chatlog.KindText, []byte(text), chatlog.ID{}, when)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.store.Put(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.Post(ctx, ch.ID, "today"); err != nil {
		t.Fatal(err)
	}
	// Bob keeps three days: he must get "two days ago" and "today" only,
	// and the ten-day-old message must never be sent to him.
	bob := newChatNodeWith(t, nw, "bob", func(c *chatlog.ServiceConfig) { c.DefaultRange = chatlog.Range{Days: 3} })
	joinWhenSeen(t, bob, ch.ID)
	// Until his set is alice's inside his range, sync still has something
	// to bring: only then is the check final.
	inside := time.Now().Add(-72 * time.Hour).UnixMilli()
	testutil.WaitFor(t, 15*time.Second, "bob's history inside his range to be alice's", func() bool {
		if hasTexts(t, bob, ch.ID, "ten days ago") {
			t.Fatal("bob received a message older than his range")
		}
		return hasTexts(t, bob, ch.ID, "two days ago", "today") && slices.Equal(storedSince(t, bob, cid, 0), storedSince(t, alice, cid, inside))
	})
	if hasTexts(t, bob, ch.ID, "ten days ago") {
		t.Fatal("bob received a message older than his range")
	}
	for _, it := range storedSince(t, bob, cid, 0) {
		if it.Time < time.Now().Add(-72*time.Hour).UnixMilli() {
			t.Fatalf("bob's store holds an item from %v", time.UnixMilli(it.Time))
		}
	}
}

func TestMarkedSurvivesRetention(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNode(t, nw, "alice")
	ch := createChannel(t, ctx, alice, "notes")
	var keep chatlog.Entry
	for i := range 10 {
		v, err := alice.Post(ctx, ch.ID, fmt.Sprint("note ", i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			keep = v
		}
	}
	if err := alice.Mark(ctx, ch.ID, keep.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := alice.SetSettings(ctx, ch.ID, &chatlog.Range{Count: 3}, nil); err != nil {
		t.Fatal(err)
	}
	got := texts(t, alice, ch.ID)
	want := []string{"note 2", "note 7", "note 8", "note 9"}
	if !slices.Equal(got, want) {
		t.Fatalf("after keeping the last 3 with note 2 marked: %q, want %q", got, want)
	}
	ms, _ := alice.Messages(ctx, ch.ID, time.Time{}, 10)
	if !ms[0].Marked {
		t.Fatal("the kept message is not shown as marked")
	}
}

func TestRetractionHonouredEverywhere(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNode(t, nw, "alice")
	bob := newChatNode(t, nw, "bob")
	ch := createChannel(t, ctx, alice, "oops")
	joinWhenSeen(t, bob, ch.ID)
	v, err := alice.Post(ctx, ch.ID, "secret typo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Post(ctx, ch.ID, "fine"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "bob to get both", func() bool { return hasTexts(t, bob, ch.ID, "secret typo", "fine") })

	if err := bob.Retract(ctx, ch.ID, v.ID); !errors.Is(err, chatlog.ErrNotAuthor) && !errors.Is(err, chatlog.ErrNotJoined) {
		t.Fatalf("bob retracting alice's message: %v, want ErrNotAuthor", err)
	}
	if err := alice.Retract(ctx, ch.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*chatNode{alice, bob} {
		testutil.WaitFor(t, 10*time.Second, n.node.Name()+" to show the retraction", func() bool {
			return hasTexts(t, n, ch.ID, "(retracted)", "fine") && !hasTexts(t, n, ch.ID, "secret typo")
		})
	}
	// The record is kept, not deleted.
	mid, _ := chatlog.ParseID(v.ID)
	if _, ok, _ := bob.store.Get(mid); !ok {
		t.Fatal("bob deleted the retracted record; retraction is not deletion")
	}
	// A newcomer gets the rest of the history, but not the retracted text.
	carol := newChatNode(t, nw, "carol")
	joinWhenSeen(t, carol, ch.ID)
	// Until her set is alice's and bob's (the retraction itself in it),
	// sync still has something to bring: only then is the check final.
	cid, _ := chatlog.ParseChannelID(ch.ID)
	testutil.WaitFor(t, 30*time.Second, "carol's history to be alice's and bob's", func() bool {
		if _, ok, _ := carol.store.Get(mid); ok {
			t.Fatal("the retracted message was served to a newcomer")
		}
		got := storedSince(t, carol, cid, 0)
		return hasTexts(t, carol, ch.ID, "fine") && slices.Equal(got, storedSince(t, alice, cid, 0)) && slices.Equal(got, storedSince(t, bob, cid, 0))
	})
	if _, ok, _ := carol.store.Get(mid); ok {
		t.Fatal("the retracted message was served to a newcomer")
	}
}

// storedSince lists what n stores of channel ch from since on: the set that
// sync reconciles.
func storedSince(t *testing.T, n *chatNode, ch chatlog.ChannelID, since int64) []chatlog.Item {
	t.Helper()
	items, err := n.store.Items(ch, since)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

func TestBurnNeverOnDisk(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNode(t, nw, "alice")
	bob := newChatNode(t, nw, "bob")
	ch := createChannel(t, ctx, alice, "whisper")
	joinWhenSeen(t, bob, ch.ID)
	burn := true
	if err := bob.SetSettings(ctx, ch.ID, nil, &burn); !errors.Is(err, chatlog.ErrNotOwner) {
		t.Fatalf("bob switching burn on: %v, want ErrNotOwner", err)
	}
	if err := alice.SetSettings(ctx, ch.ID, nil, &burn); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "bob to see the burn setting", func() bool {
		chs, _ := bob.Channels(ctx)
		for _, c := range chs {
			if c.ID == ch.ID {
				return c.Burn
			}
		}
		return false
	})
	sub := bob.SubscribeChat()
	defer sub.Close()
	events := sub.C()
	marker := fmt.Sprintf("burn-marker-%d-%x", time.Now().UnixNano(), time.Now().UnixNano()*7919)
	if _, err := alice.Post(ctx, ch.ID, marker); err != nil {
		t.Fatal(err)
	}
	var seen *chatlog.Entry
	deadline := time.After(10 * time.Second)
	for seen == nil {
		select {
		case e := <-events:
			if e.Type == "message" && e.Message != nil && e.Message.Text == marker {
				seen = e.Message
			}
		case <-deadline:
			t.Fatal("bob did not see the burn message live")
		}
	}
	if !seen.Burn {
		t.Fatal("the live message is not flagged burn")
	}
	if !hasTexts(t, bob, ch.ID, marker) {
		t.Fatal("the unread burn message is not in bob's view")
	}
	if err := bob.Read(ctx, ch.ID, seen.ID); err != nil {
		t.Fatal(err)
	}
	if hasTexts(t, bob, ch.ID, marker) {
		t.Fatal("the burn message is still in bob's view after being read")
	}
	// Nothing on disk anywhere: every node's files, the database included.
	for _, n := range []*chatNode{alice, bob} {
		filepath.WalkDir(n.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(marker)) {
				t.Fatalf("the burn marker is on disk in %s", path)
			}
			return nil
		})
	}
	// And a newcomer's sync brings nothing of the burn channel.
	cid, _ := chatlog.ParseChannelID(ch.ID)
	if items, _ := alice.store.Items(cid, 0); len(items) > 1 {
		t.Fatalf("alice stored %d items in the burn channel", len(items))
	}
}

func TestRejectedMessagesScoreTheSenderDown(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNode(t, nw, "alice")
	bob := newChatNode(t, nw, "bob")
	mallory := newChatNode(t, nw, "mallory")
	ch := createChannel(t, ctx, alice, "guarded")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	joinWhenSeen(t, bob, ch.ID)
	joinWhenSeen(t, mallory, ch.ID)
	orig, err := alice.Post(ctx, ch.ID, "alice's words")
	if err != nil {
		t.Fatal(err)
	}
	origID, _ := chatlog.ParseID(orig.ID)
	testutil.WaitFor(t, 10*time.Second, "bob and mallory to have alice's message", func() bool {
		return hasTexts(t, bob, ch.ID, "alice's words") && hasTexts(t, mallory, ch.ID, "alice's words")
	})
	// A line, alice - bob - mallory: what mallory sends reaches bob from
	// her, never first by way of alice, who is not to blame for what only
	// bob's state can refuse.
	nw.Partition([]mesh.ID{alice.node.ID()}, []mesh.ID{mallory.node.ID()})
	testutil.WaitFor(t, 10*time.Second, "bob to link alice and mallory, and alice not mallory", func() bool {
		linked := func(n *chatNode, id mesh.ID) bool {
			return slices.ContainsFunc(n.node.Peers(), func(p mesh.PeerInfo) bool { return p.ID == id })
		}
		return linked(bob, mallory.node.ID()) && linked(bob, alice.node.ID()) && !linked(alice, mallory.node.ID())
	})
	failures := func() int {
		total := 0
		for _, p := range bob.node.Peers() {
			total += p.Failures
		}
		return total
	}
	now := time.Now()
	forged := chatlog.SignUnchecked(mallory.ident, cid, chatlog.KindText, []byte("forged"), chatlog.ID{}, now)
	badSig := forged.Encode()
	badSig[len(badSig)-1] ^= 0x55
	settingBody := []byte(`{"burn":true}`)
	// Each is sent under its own message's broadcast id, as a real node
	// sends, so that it is refused for its own reason. (A message stamped
	// ahead of the receiver's clock, or of a kind of a newer version,
	// scores nobody down: see TestFutureMessageDoesNotScoreDownRelay.)
	sign := func(kind chatlog.Kind, body []byte, ref chatlog.ID, at time.Time) *chatlog.Message {
		return chatlog.SignUnchecked(mallory.ident, cid, kind, body, ref, at)
	}
	tests := []struct {
		name string
		m    *chatlog.Message
		msg  []byte
	}{
		{"bad signature", forged, badSig},
		{"retraction not by the author", sign(chatlog.KindRetract, nil, origID, now), nil},
		{"setting not by the owner", sign(chatlog.KindSetting, settingBody, chatlog.ID{}, now), nil},
		{"body over the limit", sign(chatlog.KindText, bytes.Repeat([]byte("a"), chatlog.MaxBody+1), chatlog.ID{}, now), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := failures()
			msg := tt.msg
			if msg == nil {
				msg = tt.m.Encode()
			}
			if err := mallory.node.BroadcastID(ctx, "chat/1", mesh.MsgID(tt.m.ID[:16]), msg); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 5*time.Second, "the sender to be scored down", func() bool { return failures() > before })
			got := texts(t, bob, ch.ID)
			if !slices.Equal(got, []string{"alice's words"}) {
				t.Fatalf("bob's channel changed: %q", got)
			}
			chs, _ := bob.Channels(ctx)
			for _, c := range chs {
				if c.ID == ch.ID && c.Burn {
					t.Fatal("a setting not by the owner took effect")
				}
			}
		})
	}
}

// A node's own messages keep the order they were written in, however many
// it writes within one millisecond (messages sort by time, then by id).
func TestOwnPostsKeepTheirOrder(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNodeWith(t, nw, "alice", func(c *chatlog.ServiceConfig) { c.AuthorRate = -1 })
	ch := createChannel(t, ctx, alice, "fast")
	const n = 1000
	want := postTexts(t, ctx, alice, ch.ID, "post ", n)
	ms, err := alice.Messages(ctx, ch.ID, time.Time{}, n)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Text)
	}
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("%d messages; first out of order at %d: %q, want %q", len(got), i, got[i], want[i])
			}
		}
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
}
