package chatlog_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/catnest/catnest/chatlog"
)

// createChannel creates a channel named name on n (burn after read off).
func createChannel(t *testing.T, ctx context.Context, n *chatNode, name string) chatlog.ChannelInfo {
	t.Helper()
	ch, err := n.CreateChannel(ctx, name, false)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// postTexts posts count texts "prefix 0", "prefix 1"… to ch from n, one
// after the other, and returns them.
func postTexts(t *testing.T, ctx context.Context, n *chatNode, ch, prefix string, count int) []string {
	t.Helper()
	var posts []string
	for i := range count {
		text := fmt.Sprint(prefix, i)
		if _, err := n.Post(ctx, ch, text); err != nil {
			t.Fatal(err)
		}
		posts = append(posts, text)
	}
	return posts
}

// failures is how many times n scored its link to peer down; 0 if they
// are not linked.
func failures(n, peer *chatNode) int {
	for _, p := range n.node.Peers() {
		if p.ID == peer.node.ID() {
			return p.Failures
		}
	}
	return 0
}
