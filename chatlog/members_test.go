package chatlog_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestMembers: a channel's members are the online nodes that joined it,
// found by the channel's id or its name; a name two channels share is
// refused (the caller gives the id), an unknown one is ErrUnknownChannel,
// and a member that goes offline leaves the list.
func TestMembers(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	ctx := context.Background()
	var nodes []*chatNode
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		nodes = append(nodes, newChatNodeWith(t, nw, name, nil, meshtest.Fast))
	}
	ch, err := nodes[0].CreateChannel(ctx, "team", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:3] {
		joinWhenSeen(t, n, ch.ID)
	}
	// d owns another channel of the same name; e joins nothing.
	other := createChannel(t, ctx, nodes[3], "other")
	want := []mesh.ID{nodes[0].node.ID(), nodes[1].node.ID(), nodes[2].node.ID()}
	slices.Sort(want)
	for _, key := range []string{ch.ID, "team"} {
		var got []mesh.ID
		testutil.WaitFor(t, 20*time.Second, "e to see the three members of team by "+key, func() bool {
			got, err = nodes[4].Members(ctx, key)
			return err == nil && slices.Equal(got, want)
		})
	}
	// d's channel is advertised on its own schedule: seeing team's members
	// says nothing of whether e has heard of other yet (the CI run that
	// asked once, at once, found it unknown).
	testutil.WaitFor(t, 20*time.Second, "e to see d alone as the member of other", func() bool {
		got, err := nodes[4].Members(ctx, other.ID)
		return err == nil && slices.Equal(got, []mesh.ID{nodes[3].node.ID()})
	})
	if _, err := nodes[4].Members(ctx, "nobody's"); !errors.Is(err, chatlog.ErrUnknownChannel) {
		t.Errorf("an unknown channel: %v", err)
	}
	if _, err := nodes[3].CreateChannel(ctx, "team", false); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "a second channel named team to make the name ambiguous", func() bool {
		_, err := nodes[4].Members(ctx, "team")
		return errors.Is(err, chatlog.ErrInvalidInput)
	})
	// By id, the first team still has its own members; one goes offline.
	nw.Kill(nodes[2].node.ID())
	testutil.WaitFor(t, 30*time.Second, "the member that went offline to leave the list", func() bool {
		got, err := nodes[4].Members(ctx, ch.ID)
		return err == nil && len(got) == 2 && !slices.Contains(got, nodes[2].node.ID())
	})
}
