package chatlog_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// signHistory signs count text messages of ident in channel cid, one
// second apart and ending a minute ago, with bodies of size(i) bytes. It
// signs on two goroutines: at these sizes signing is most of the setup.
func signHistory(tb testing.TB, ident *mesh.Identity, cid chatlog.ChannelID, count int, size func(i int) int) []*chatlog.Message {
	tb.Helper()
	start := time.Now().Add(-time.Minute - time.Duration(count)*time.Second)
	ms := make([]*chatlog.Message, count)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < count; i += 2 {
				head := fmt.Sprintf("message %d ", i)
				body := head + strings.Repeat("abcdefghij", size(i)/10+1)
				body = body[:max(size(i), len(head))]
				m, err := chatlog.NewMessage(ident, cid, chatlog.KindText, []byte(body), chatlog.ID{}, start.Add(time.Duration(i)*time.Second))
				if err != nil {
					errs[w] = err
					return
				}
				ms[i] = m
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return ms
}

// putAll stores ms in n's store, in commits of at most 1,000 messages.
func putAll(tb testing.TB, n *chatNode, ms []*chatlog.Message) {
	tb.Helper()
	for len(ms) > 0 {
		k := min(len(ms), 1000)
		if _, err := n.store.Put(context.Background(), ms[:k]...); err != nil {
			tb.Fatal(err)
		}
		ms = ms[k:]
	}
}

// itemsOf is the (time, ID) order of ms, oldest first.
func itemsOf(ms []*chatlog.Message) []chatlog.Item {
	out := make([]chatlog.Item, len(ms))
	for i, m := range ms {
		out[i] = chatlog.Item{Time: m.Time, ID: m.ID}
	}
	slices.SortFunc(out, func(a, b chatlog.Item) int {
		if a.Time != b.Time {
			return int(a.Time - b.Time)
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	return out
}

func storedItems(t *testing.T, n *chatNode, cid chatlog.ChannelID) []chatlog.Item {
	t.Helper()
	items, err := n.store.Items(cid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// waitHistory waits until n stores exactly want (sorted oldest first).
// With newestFirst it also checks every snapshot of n's store on the way:
// each must be the newest part of want, with no gaps, as when a newcomer
// fetches from one holder. It returns how many snapshots it took.
func waitHistory(t *testing.T, n *chatNode, cid chatlog.ChannelID, want []chatlog.Item, newestFirst bool, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for snapshots := 1; ; snapshots++ {
		got := storedItems(t, n, cid)
		if slices.Equal(got, want) {
			return snapshots
		}
		if newestFirst && !slices.Equal(got, want[len(want)-min(len(got), len(want)):]) {
			t.Fatalf("%s holds %d messages that are not the newest %d of the history", n.node.Name(), len(got), len(got))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stores %d of %d messages after %v", n.node.Name(), len(got), len(want), timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bigSync is a test of history sync that takes the time of a real history
// under the race detector: nodes wait up to a minute for a step.
func bigSync(c *chatlog.ServiceConfig) { c.SyncTimeout = time.Minute }

// newHolder makes a node that owns a channel and stores ms in it.
func newHolder(t *testing.T, nw *meshtest.Network, name string, count int, size func(int) int) (*chatNode, string, chatlog.ChannelID, []*chatlog.Message) {
	t.Helper()
	n := newChatNodeWith(t, nw, name, bigSync)
	ch, err := n.CreateChannel(context.Background(), "archive", false)
	if err != nil {
		t.Fatal(err)
	}
	cid, _ := chatlog.ParseChannelID(ch.ID)
	ms := signHistory(t, n.ident, cid, count, size)
	putAll(t, n, ms)
	return n, ch.ID, cid, ms
}

// TestSyncLargeBodies: a newcomer gets a channel of 3,000 messages of 8 to
// 16 KiB from one peer. Answers are full long before their message count
// limit, so every one of them is cut by its size in bytes.
func TestSyncLargeBodies(t *testing.T) {
	nw := meshtest.NewNetwork()
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int, 3000)
	for i := range sizes {
		sizes[i] = 8<<10 + rng.IntN(8<<10+1)
	}
	sizes[0], sizes[1] = chatlog.MaxBody, chatlog.MaxBody
	_, ch, cid, ms := newHolder(t, nw, "alice", len(sizes), func(i int) int { return sizes[i] })
	bob := newChatNodeWith(t, nw, "bob", bigSync)
	joinWhenSeen(t, bob, ch)
	waitHistory(t, bob, cid, itemsOf(ms), true, 2*time.Minute)
}

// TestSyncManySmallMessages: a newcomer gets a channel of 10,000 short
// messages from one peer: the ID lists of reconciliation and the answers
// are full by count of messages, not by their size.
func TestSyncManySmallMessages(t *testing.T) {
	nw := meshtest.NewNetwork()
	rng := rand.New(rand.NewPCG(3, 4))
	sizes := make([]int, 10_000)
	for i := range sizes {
		sizes[i] = 20 + rng.IntN(200)
	}
	_, ch, cid, ms := newHolder(t, nw, "alice", len(sizes), func(i int) int { return sizes[i] })
	bob := newChatNodeWith(t, nw, "bob", bigSync)
	joinWhenSeen(t, bob, ch)
	waitHistory(t, bob, cid, itemsOf(ms), true, 2*time.Minute)
}

// TestSyncNewestFirst: a newcomer stores the newest messages first and
// walks back in time, so the first batch it stores, and the first message
// it shows, are the newest; whatever it holds at any moment is the newest
// part of the history, with no gaps.
func TestSyncNewestFirst(t *testing.T) {
	nw := meshtest.NewNetwork()
	_, ch, cid, ms := newHolder(t, nw, "alice", 2000, func(i int) int { return 2<<10 + i%(2<<10) })
	want := itemsOf(ms)
	bob := newChatNodeWith(t, nw, "bob", bigSync)
	sub := bob.SubscribeChat()
	defer sub.Close()
	events := sub.C()
	joinWhenSeen(t, bob, ch)

	first := make(chan chatlog.Event, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case e := <-events:
				if e.Type == "message" {
					first <- e
					return
				}
			case <-done:
				return
			}
		}
	})
	defer wg.Wait()
	defer close(done)

	snapshots := waitHistory(t, bob, cid, want, true, 2*time.Minute)
	select {
	case e := <-first:
		newest := ms[len(ms)-1]
		if e.Message == nil || e.Message.ID != newest.ID.String() {
			t.Fatalf("the first message bob showed is %+v, want the newest, %v", e.Message, newest.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bob showed no message")
	}
	t.Logf("%d snapshots of bob's store", snapshots)
}

// TestSyncHalvesConverge: two members who each hold half of a large
// history (interleaved in time) end up with all of it, each sending the
// other what it lacks.
func TestSyncHalvesConverge(t *testing.T) {
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	alice := newChatNodeWith(t, nw, "alice", bigSync)
	bob := newChatNodeWith(t, nw, "bob", bigSync)
	ch := createChannel(t, ctx, alice, "halves")
	cid, _ := chatlog.ParseChannelID(ch.ID)
	joinWhenSeen(t, bob, ch.ID)
	rng := rand.New(rand.NewPCG(5, 6))
	sizes := make([]int, 6000)
	for i := range sizes {
		sizes[i] = 20 + rng.IntN(400)
	}
	ms := signHistory(t, alice.ident, cid, len(sizes), func(i int) int { return sizes[i] })
	var a, b []*chatlog.Message
	for i, m := range ms {
		if i%2 == 0 {
			a = append(a, m)
		} else {
			b = append(b, m)
		}
	}
	putAll(t, alice, a)
	putAll(t, bob, b)
	want := itemsOf(ms)
	waitHistory(t, alice, cid, want, false, 2*time.Minute)
	waitHistory(t, bob, cid, want, false, 2*time.Minute)
}
