package chatlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// usage returns what n's store holds of channel ch.
func usage(t *testing.T, n *chatNode, ch string) chatlog.Usage {
	t.Helper()
	cid, err := chatlog.ParseChannelID(ch)
	if err != nil {
		t.Fatal(err)
	}
	u, err := n.store.Usage(cid)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// dbSize is the size of n's database file.
func dbSize(t *testing.T, n *chatNode) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(n.dir, "catnest.db"))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// onDisk reports the first file under n's data dir that contains b.
func onDisk(t *testing.T, n *chatNode, b []byte) string {
	t.Helper()
	found := ""
	err := filepath.WalkDir(n.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, b) {
			found = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func linked(a, b *chatNode) bool {
	for _, p := range a.node.Peers() {
		if p.ID == b.node.ID() {
			return true
		}
	}
	return false
}

// TestRangeEnforcedOnStore posts 500 messages: a member that keeps the
// last 50 holds only those, whether they came live or, for a newcomer,
// through history sync; the author keeps the last 50 of its own posts.
func TestRangeEnforcedOnStore(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	// No live rate limit: alice posts as fast as she can.
	unlimited := func(c *chatlog.ServiceConfig) { c.AuthorRate = -1 }
	keep50 := func(c *chatlog.ServiceConfig) { c.DefaultRange, c.AuthorRate = chatlog.Range{Count: 50}, -1 }
	alice := newChatNodeWith(t, nw, "alice", unlimited)
	bob := newChatNodeWith(t, nw, "bob", keep50)
	ch := createChannel(t, ctx, alice, "busy")
	joinWhenSeen(t, bob, ch.ID)
	var posts []string
	for i := range 500 {
		text := fmt.Sprint("post ", i)
		if _, err := alice.Post(ctx, ch.ID, text); err != nil {
			t.Fatal(err)
		}
		posts = append(posts, text)
		// 50, and any that share the millisecond of the oldest kept.
		if u := usage(t, bob, ch.ID); u.Texts > 60 {
			t.Fatalf("bob holds %d texts, range 50", u.Texts)
		}
	}
	last50 := posts[len(posts)-50:]
	testutil.WaitFor(t, 20*time.Second, "bob to get the last post", func() bool { return hasTexts(t, bob, ch.ID, posts[499]) })
	// A newcomer's history comes by sync from alice, who keeps all 500.
	carol := newChatNodeWith(t, nw, "carol", keep50)
	joinWhenSeen(t, carol, ch.ID)
	testutil.WaitFor(t, 20*time.Second, "carol's history", func() bool { return hasTexts(t, carol, ch.ID, last50...) })
	for _, n := range []*chatNode{bob, carol} {
		keptNewest(t, n, ch.ID, posts, 50)
	}
	// The author's own posts obey its range too.
	if err := alice.SetSettings(ctx, ch.ID, &chatlog.Range{Count: 3}, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := alice.Post(ctx, ch.ID, fmt.Sprint("more ", i)); err != nil {
			t.Fatal(err)
		}
	}
	var more []string
	for i := range 10 {
		more = append(more, fmt.Sprint("more ", i))
	}
	keptNewest(t, alice, ch.ID, append(posts, more...), 3)
}

// keptNewest checks that n keeps the last k of posts (in the order they
// were posted) and no other, but those posted in the same millisecond as
// the k-th last: a range keeps every message of the instant it starts at,
// so that sync does not bring them again.
func keptNewest(t *testing.T, n *chatNode, ch string, posts []string, k int) {
	t.Helper()
	views, err := n.Messages(context.Background(), ch, time.Time{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]time.Time{}
	for _, v := range views {
		shown[v.Text] = v.Time
	}
	want := posts[len(posts)-k:]
	for _, p := range want {
		if _, ok := shown[p]; !ok {
			t.Errorf("%s does not keep %q, one of the last %d", n.node.Name(), p, k)
			return
		}
	}
	start := shown[want[0]]
	for p, at := range shown {
		if !slices.Contains(want, p) && !at.Equal(start) {
			t.Errorf("%s keeps %q, older than the last %d", n.node.Name(), p, k)
		}
	}
	if u := usage(t, n, ch); u.Texts != len(shown) {
		t.Errorf("%s stores %d texts and shows %d", n.node.Name(), u.Texts, len(shown))
	}
}

// TestSettingsHugeDays sets ranges of very many days, which users type to
// mean "forever": nothing is deleted. A negative range is refused.
func TestSettingsHugeDays(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNode(t, nw, "alice")
	ch := createChannel(t, ctx, alice, "archive")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	if err := alice.SetSettings(ctx, ch.ID, &chatlog.Range{}, nil); err != nil {
		t.Fatal(err)
	}
	// 300 messages over the last three years.
	now := time.Now()
	var batch []*chatlog.Message
	for i := range 300 {
		at := now.Add(-time.Duration(300-i) * 87 * time.Hour)
		m, err := chatlog.NewMessage(alice.ident, cid, chatlog.KindText, fmt.Appendf(nil, "old %d", i), chatlog.ID{}, at)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, m)
	}
	if _, err := alice.store.Put(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	for _, days := range []int{1_000_000, 106_752, math.MaxInt32, math.MaxInt} {
		if err := alice.SetSettings(ctx, ch.ID, &chatlog.Range{Days: days}, nil); err != nil {
			t.Fatalf("days %d: %v", days, err)
		}
		if u := usage(t, alice, ch.ID); u.Texts != 300 {
			t.Fatalf("a range of %d days left %d of 300 messages", days, u.Texts)
		}
	}
	for _, r := range []chatlog.Range{{Days: -1}, {Count: -5}, {Days: math.MinInt}} {
		err := alice.SetSettings(ctx, ch.ID, &r, nil)
		if !errors.Is(err, chatlog.ErrInvalidInput) || !strings.Contains(err.Error(), "negative") {
			t.Errorf("range %+v: %v, want ErrInvalidInput saying it is negative", r, err)
		}
	}
	// A real limit still applies: 30 days keeps the messages of 30 days.
	if err := alice.SetSettings(ctx, ch.ID, &chatlog.Range{Days: 30}, nil); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, m := range batch {
		if m.Time >= time.Now().Add(-30*24*time.Hour).UnixMilli() {
			want++
		}
	}
	if u := usage(t, alice, ch.ID); u.Texts != want {
		t.Errorf("30 days kept %d messages, want %d", u.Texts, want)
	}
}

// TestDaysPrunedAsTimePasses stores a message just inside a one-day range:
// the service drops it once time has moved it out, with no new message or
// settings change to prompt it.
func TestDaysPrunedAsTimePasses(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNodeWith(t, nw, "alice", func(c *chatlog.ServiceConfig) { c.PruneInterval = 50 * time.Millisecond })
	ch := createChannel(t, ctx, alice, "daily")
	if err := alice.SetSettings(ctx, ch.ID, &chatlog.Range{Days: 1}, nil); err != nil {
		t.Fatal(err)
	}
	cid, _ := chatlog.ParseChannelID(ch.ID)
	var old []*chatlog.Message
	for i := range 200 {
		// Leaving the range within the next two seconds.
		at := time.Now().Add(-24*time.Hour + 2*time.Second - time.Duration(i)*time.Millisecond)
		m, err := chatlog.NewMessage(alice.ident, cid, chatlog.KindText, fmt.Appendf(nil, "expiring %d", i), chatlog.ID{}, at)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, m)
	}
	if n, err := alice.store.Put(ctx, old...); err != nil || n == 0 {
		t.Fatalf("Put inside the range added %d, %v", n, err)
	}
	if _, err := alice.Post(ctx, ch.ID, "fresh"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the expired messages to be pruned", func() bool { return usage(t, alice, ch.ID).Texts == 1 })
	if got := texts(t, alice, ch.ID); !slices.Equal(got, []string{"fresh"}) {
		t.Fatalf("after the day passed: %q", got)
	}
}

// TestBurnForgetsHistoryEverywhere switches burn-after-read on in a channel
// with a history of 2,000 messages on three nodes: on every node, the
// messages from before (one of them marked, one retracted) leave the disk,
// and their bytes are in no file under the node's data dir.
func TestBurnForgetsHistoryEverywhere(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNode(t, nw, "alice")
	bob := newChatNode(t, nw, "bob")
	carol := newChatNode(t, nw, "carol")
	nodes := []*chatNode{alice, bob, carol}
	ch := createChannel(t, ctx, alice, "soon secret")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	joinWhenSeen(t, bob, ch.ID)
	joinWhenSeen(t, carol, ch.ID)
	// Every node holds the same history.
	var history []*chatlog.Message
	start := time.Now().Add(-time.Hour)
	for i := range 2000 {
		who := nodes[i%3]
		m, err := chatlog.NewMessage(who.ident, cid, chatlog.KindText, fmt.Appendf(nil, "history %d %s", i, strings.Repeat("z", i%100)), chatlog.ID{}, start.Add(time.Duration(i)*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		history = append(history, m)
	}
	for _, n := range nodes {
		if _, err := n.store.Put(ctx, history...); err != nil {
			t.Fatal(err)
		}
	}
	marker := fmt.Sprintf("before-burn-%x", time.Now().UnixNano())
	v, err := alice.Post(ctx, ch.ID, marker)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := bob.Post(ctx, ch.ID, marker+" retracted")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		testutil.WaitFor(t, 10*time.Second, n.node.Name()+" to get the markers", func() bool { return hasTexts(t, n, ch.ID, marker, marker+" retracted") })
	}
	if err := bob.Retract(ctx, ch.ID, gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := carol.Mark(ctx, ch.ID, v.ID, true); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if where := onDisk(t, n, []byte(marker)); where == "" {
			t.Fatalf("the marker is not on %s's disk before burn: the check is broken", n.node.Name())
		}
	}

	burn := true
	if err := alice.SetSettings(ctx, ch.ID, nil, &burn); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		testutil.WaitFor(t, 20*time.Second, "the marker to leave "+n.node.Name()+"'s disk", func() bool { return onDisk(t, n, []byte(marker)) == "" })
		items, err := n.store.Items(cid, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			m, ok, _ := n.store.Get(it.ID)
			if ok && m.Kind != chatlog.KindSetting {
				t.Fatalf("%s still stores a %d message of the burn channel", n.node.Name(), m.Kind)
			}
		}
		if u := usage(t, n, ch.ID); u != (chatlog.Usage{}) {
			t.Errorf("%s: usage %+v after burn", n.node.Name(), u)
		}
		if ms, err := n.Messages(ctx, ch.ID, time.Time{}, 100); err != nil || len(ms) != 0 {
			t.Errorf("%s shows %d messages of before the burn, %v", n.node.Name(), len(ms), err)
		}
	}
}

// TestLiveFloodLimited has a member flood a channel live with 4,000 posts
// of 16 KB while another posts as usual. The flooder, the receiver's
// neighbour, is scored down until it is cut off; the honest member that
// relays some of the flood is not. The receiver stores no more than the
// author's rate lets through and the quota bounds, and the honest posts
// arrive.
func TestLiveFloodLimited(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	const quota = 1 << 20
	limited := func(c *chatlog.ServiceConfig) {
		c.Quota = chatlog.Quota{Bytes: quota}
		c.AuthorRate, c.AuthorBurst = 2, 20
	}
	alice := newChatNodeWith(t, nw, "alice", limited)
	bob := newChatNodeWith(t, nw, "bob", limited)
	mallory := newChatNode(t, nw, "mallory")
	ch := createChannel(t, ctx, alice, "open")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	joinWhenSeen(t, bob, ch.ID)
	joinWhenSeen(t, mallory, ch.ID)
	testutil.WaitFor(t, 10*time.Second, "mallory to link bob", func() bool { return linked(bob, mallory) })
	testutil.WaitFor(t, 10*time.Second, "alice to link bob", func() bool { return linked(bob, alice) })
	sizeBefore := dbSize(t, bob)

	// Signed beforehand, so that the flood is as fast as mallory's links.
	big := strings.Repeat("f", chatlog.MaxBody-6)
	flood := make([]*chatlog.Message, 4000)
	for i := range flood {
		m, err := chatlog.NewMessage(mallory.ident, cid, chatlog.KindText, fmt.Appendf(nil, "%05d %s", i, big), chatlog.ID{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		flood[i] = m
	}
	began := time.Now()
	var honest []string
	for i, m := range flood {
		// Mallory's links go as she is banned: sending fails then.
		_ = mallory.node.BroadcastID(ctx, "chat/1", mesh.MsgID(m.ID[:16]), m.Encode())
		if i%800 == 0 {
			text := fmt.Sprint("honest during the flood ", i)
			if _, err := alice.Post(ctx, ch.ID, text); err != nil {
				t.Fatal(err)
			}
			honest = append(honest, text)
		}
	}
	// Past the burst, every message of hers that bob drops is an offence
	// of his neighbour mallory: he bans her.
	testutil.WaitFor(t, 60*time.Second, "bob to cut mallory off", func() bool { return !linked(bob, mallory) })
	for i := range 5 {
		text := fmt.Sprint("honest after the flood ", i)
		if _, err := alice.Post(ctx, ch.ID, text); err != nil {
			t.Fatal(err)
		}
		honest = append(honest, text)
	}
	testutil.WaitFor(t, 20*time.Second, "alice's posts to reach bob", func() bool { return hasTexts(t, bob, ch.ID, honest[len(honest)-5:]...) })
	elapsed := time.Since(began)

	if !linked(bob, alice) {
		t.Error("bob cut alice off")
	}
	if f := failures(bob, alice); f > 0 {
		t.Errorf("bob scored alice, who relays mallory's flood, down %d times", f)
	}
	u := usage(t, bob, ch.ID)
	if u.Bytes > quota {
		t.Errorf("bob stores %d bytes of the channel, quota %d", u.Bytes, quota)
	}
	// At most the burst and the rate over the time taken got through, at
	// bob and at alice, whose copies bob may sync (history is not
	// rate-limited, only bounded by the quota).
	if limit := 2*(20+int(2*elapsed.Seconds())+1) + len(honest); u.Texts > limit {
		t.Errorf("bob stores %d texts after %v, the rate lets through at most %d", u.Texts, elapsed, limit)
	}
	if size := dbSize(t, bob); size > sizeBefore+4*quota {
		t.Errorf("bob's database grew from %d to %d bytes under a quota of %d", sizeBefore, size, quota)
	}
	// The newest honest posts are kept; the quota made room for them.
	if !hasTexts(t, bob, ch.ID, honest[len(honest)-5:]...) {
		t.Error("honest posts were not kept")
	}
	t.Logf("after %v: bob stores %d texts, %d bytes; db %d bytes", elapsed, u.Texts, u.Bytes, dbSize(t, bob))
}

// TestRateLimitSparesRelays has a member flood a channel live through an
// honest relay only: the receiver drops what is past the author's rate,
// but does not score the relay down for it (an offence per message would
// soon have the relay banned, and the flooder would have cut two honest
// members apart).
func TestRateLimitSparesRelays(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	// Alice relays and stores all, so that she keeps relaying.
	alice := newChatNodeWith(t, nw, "alice", func(c *chatlog.ServiceConfig) { c.AuthorRate = -1 })
	bob := newChatNodeWith(t, nw, "bob", func(c *chatlog.ServiceConfig) { c.AuthorRate, c.AuthorBurst = 1, 5 })
	mallory := newChatNode(t, nw, "mallory")
	// Mallory reaches bob only through alice.
	nw.Partition([]mesh.ID{mallory.node.ID()}, []mesh.ID{bob.node.ID()})
	ch := createChannel(t, ctx, alice, "open")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	joinWhenSeen(t, bob, ch.ID)
	joinWhenSeen(t, mallory, ch.ID)
	testutil.WaitFor(t, 10*time.Second, "alice to link bob and mallory", func() bool { return linked(alice, bob) && linked(alice, mallory) })
	delivered := bob.node.BroadcastStats().Delivered
	const n = 300
	floodLive(t, mallory, cid, n)
	// 100 messages past a burst of 5 are far more offences than the
	// penalty threshold (32 a minute) that bans a peer.
	testutil.WaitFor(t, 60*time.Second, "bob to get 100 of the flood through alice, or to cut her off", func() bool {
		return bob.node.BroadcastStats().Delivered-delivered >= 100 || !linked(bob, alice)
	})
	if !linked(bob, alice) {
		t.Fatal("bob cut alice off for relaying mallory's flood")
	}
	if f := failures(bob, alice); f > 0 {
		t.Errorf("bob scored alice down %d times for relaying mallory's flood", f)
	}
	if _, err := alice.Post(ctx, ch.ID, "still linked"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "alice's post to reach bob", func() bool { return hasTexts(t, bob, ch.ID, "still linked") })
}

// TestSyncFloodQuota has a member hold 1,000 messages of 16 KB that a
// newcomer syncs: history is not rate-limited, but the quota holds, and
// honest posts still arrive and are kept.
func TestSyncFloodQuota(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	const quota = 2 << 20
	alice := newChatNode(t, nw, "alice")
	mallory := newChatNode(t, nw, "mallory")
	ch := createChannel(t, ctx, alice, "open")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	joinWhenSeen(t, mallory, ch.ID)
	big := strings.Repeat("s", chatlog.MaxBody-6)
	start := time.Now().Add(-time.Hour)
	var flood []*chatlog.Message
	for i := range 1000 {
		m, err := chatlog.NewMessage(mallory.ident, cid, chatlog.KindText, fmt.Appendf(nil, "%05d %s", i, big), chatlog.ID{}, start.Add(time.Duration(i)*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, m)
	}
	for i := 0; i < len(flood); i += 100 {
		if _, err := mallory.store.Put(ctx, flood[i:i+100]...); err != nil {
			t.Fatal(err)
		}
	}
	bob := newChatNodeWith(t, nw, "bob", func(c *chatlog.ServiceConfig) { c.Quota = chatlog.Quota{Bytes: quota} })
	sizeBefore := dbSize(t, bob)
	joinWhenSeen(t, bob, ch.ID)
	// The newest of the history are kept, the oldest made room.
	testutil.WaitFor(t, 60*time.Second, "bob to fill his quota with the newest history", func() bool {
		u := usage(t, bob, ch.ID)
		if u.Bytes > quota {
			t.Fatalf("bob stores %d bytes, quota %d", u.Bytes, quota)
		}
		newest, _ := bob.store.Has(flood[len(flood)-1].ID)
		return newest && u.Bytes > quota-2*chatlog.MaxEncoded
	})
	for i := range 10 {
		if _, err := alice.Post(ctx, ch.ID, fmt.Sprint("honest ", i)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "alice's posts to reach bob", func() bool { return hasTexts(t, bob, ch.ID, "honest 0", "honest 9") })
	if ok, _ := bob.store.Has(flood[0].ID); ok {
		t.Error("the oldest history message was kept over the quota")
	}
	if u := usage(t, bob, ch.ID); u.Bytes > quota {
		t.Errorf("bob stores %d bytes, quota %d", u.Bytes, quota)
	}
	if size := dbSize(t, bob); size > sizeBefore+4*quota {
		t.Errorf("bob's database grew from %d to %d bytes under a quota of %d", sizeBefore, size, quota)
	}
}

// TestOwnPostsPaced has a member post 60 messages as fast as it can while
// every member allows each author 10 live messages a second in bursts of
// 40: the poster waits its turn, so every post arrives live (no sync
// rounds here to bring what is dropped) and its link is not scored down.
// (The poster keeps half the burst in hand, so a stall of up to 2 s on the
// way, which bunches messages, still fits the receiver's bucket.)
func TestOwnPostsPaced(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	cfg := func(c *chatlog.ServiceConfig) {
		c.AuthorRate, c.AuthorBurst = 10, 40
		c.SyncInterval = time.Hour
	}
	alice := newChatNodeWith(t, nw, "alice", cfg)
	bob := newChatNodeWith(t, nw, "bob", cfg)
	ch := createChannel(t, ctx, alice, "script")
	joinWhenSeen(t, bob, ch.ID)
	testutil.WaitFor(t, 10*time.Second, "alice and bob to link", func() bool { return linked(bob, alice) })
	posts := postTexts(t, ctx, alice, ch.ID, "line ", 60)
	testutil.WaitFor(t, 20*time.Second, "every post to reach bob", func() bool { return hasTexts(t, bob, ch.ID, posts...) })
	if f := failures(bob, alice); f > 0 {
		t.Fatalf("bob scored alice's link down %d times for posting", f)
	}
}

// TestRelayOfAFloodIsNoOffence: mallory floods a channel live through
// alice, its only link to bob. Bob refuses what is past mallory's rate,
// but alice only passed it on: bob neither scores her down nor, as
// enough offences would, bans her.
func TestRelayOfAFloodIsNoOffence(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	manual := func(c *mesh.Config) { c.ManualLinks = true }
	alice := newChatNode(t, nw, "alice", manual)
	bob := newChatNodeWith(t, nw, "bob", func(c *chatlog.ServiceConfig) { c.AuthorRate, c.AuthorBurst = 1, 5 }, manual)
	mallory := newChatNode(t, nw, "mallory", manual)
	if err := alice.node.Connect(ctx, mallory.node.ID()); err != nil {
		t.Fatal(err)
	}
	if err := bob.node.Connect(ctx, alice.node.ID()); err != nil {
		t.Fatal(err)
	}
	ch := createChannel(t, ctx, bob, "open")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	delivered := bob.node.BroadcastStats().Delivered
	began := time.Now()
	const flood = 200
	floodLive(t, mallory, cid, flood)
	testutil.WaitFor(t, 30*time.Second, "bob to take the flood", func() bool {
		return bob.node.BroadcastStats().Delivered-delivered >= flood || !linked(bob, alice)
	})
	if !linked(bob, alice) {
		t.Fatal("bob cut alice off for relaying mallory's flood")
	}
	if f := failures(bob, alice); f != 0 {
		t.Fatalf("bob scored alice down %d times for relaying mallory's flood", f)
	}
	// The flood did meet bob's rate: a burst of 5 and 1 a second.
	if n, most := len(texts(t, bob, ch.ID)), 5+int(time.Since(began).Seconds())+1; n > most {
		t.Fatalf("bob stores %d of mallory's %d posts, more than its rate lets through (%d)", n, flood, most)
	}
}
