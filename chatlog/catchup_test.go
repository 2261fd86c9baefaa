package chatlog_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestCatchUpDoesNotBanTheAuthor: alice posts 150 messages at the rate
// every member allows her while bob is cut off from her. When they link
// again, alice's broadcast tells bob what passed in the last minute and
// bob pulls it from her, all at once. That burst is alice's honest past,
// not a flood: bob must not score her down for it (past the penalty
// threshold that bans her), and ends up with all 150 messages.
func TestCatchUpDoesNotBanTheAuthor(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	const posts = 150
	rate := func(c *chatlog.ServiceConfig) { c.AuthorRate, c.AuthorBurst = 100, 20 }
	alice := newChatNodeWith(t, nw, "alice", rate)
	bob := newChatNodeWith(t, nw, "bob", rate)
	ch := createChannel(t, ctx, alice, "busy")
	joinWhenSeen(t, bob, ch.ID)
	linked := func() bool {
		return slices.ContainsFunc(bob.node.Peers(), func(p mesh.PeerInfo) bool { return p.ID == alice.node.ID() })
	}
	nw.Partition([]mesh.ID{alice.node.ID()}, []mesh.ID{bob.node.ID()})
	testutil.WaitFor(t, 10*time.Second, "bob cut off from alice", func() bool { return !linked() })
	for i := range posts {
		if _, err := alice.Post(ctx, ch.ID, fmt.Sprint("post ", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.Heal()
	testutil.WaitFor(t, 30*time.Second, "bob to hold alice's posts", func() bool {
		return len(texts(t, bob, ch.ID)) == posts
	})
	if !linked() {
		t.Fatal("bob cut alice off for the messages he pulled from her")
	}
	if f := failures(bob, alice); f > 0 {
		t.Fatalf("bob scored alice down %d times for the messages he pulled from her", f)
	}
}

// TestAuthorFloodScoredDown: mallory, linked to bob, floods a channel
// with messages she signs as fast as she sends them. Bob drops what is
// past her rate and scores her down for it, to the point of cutting her
// off: unlike a catch-up, her own stamps show the flood.
func TestAuthorFloodScoredDown(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	manual := func(c *mesh.Config) { c.ManualLinks = true }
	bob := newChatNodeWith(t, nw, "bob", func(c *chatlog.ServiceConfig) { c.AuthorRate, c.AuthorBurst = 1, 5 }, manual)
	mallory := newChatNode(t, nw, "mallory", manual)
	if err := bob.node.Connect(ctx, mallory.node.ID()); err != nil {
		t.Fatal(err)
	}
	ch := createChannel(t, ctx, bob, "open")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	linked := func() bool {
		return slices.ContainsFunc(bob.node.Peers(), func(p mesh.PeerInfo) bool { return p.ID == mallory.node.ID() })
	}
	for i := 0; i < 200 && linked(); i++ {
		m, err := chatlog.NewMessage(mallory.ident, cid, chatlog.KindText, fmt.Appendf(nil, "flood %d", i), chatlog.ID{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := mallory.node.BroadcastID(ctx, "chat/1", mesh.MsgID(m.ID[:16]), m.Encode()); err != nil {
			break // cut off
		}
	}
	testutil.WaitFor(t, 30*time.Second, "bob to score mallory down or cut her off", func() bool {
		return failures(bob, mallory) > 0 || !linked()
	})
}
