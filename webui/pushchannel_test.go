package webui

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// fakeMembers answers Members from a table of channel -> node ids, with
// the chat service's errors.
type fakeMembers map[string][]mesh.ID

func (f fakeMembers) Members(_ context.Context, channel string) ([]mesh.ID, error) {
	if channel == "twins" {
		return nil, fmt.Errorf("%w: 2 channels are named %q", chatlog.ErrInvalidInput, channel)
	}
	ids, ok := f[channel]
	if !ok {
		return nil, fmt.Errorf("%w: %q", chatlog.ErrUnknownChannel, channel)
	}
	return ids, nil
}

// TestFilesPushToChannel: a push names a channel instead of node ids and
// goes to the channel's online members but this node, the source; a
// channel nobody holds is a 404, an ambiguous name, both "to" and
// "channel", or a channel of this node alone a 400 that says why.
func TestFilesPushToChannel(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	alpha, bravo, charlie := f.node.id, fakeID("bravo"), fakeID("charlie")
	s, err := New(Config{Addr: "127.0.0.1:0", APIKey: testAPIKey, Files: f.files, Members: fakeMembers{
		"team":  {alpha, bravo, charlie},
		"alone": {alpha},
	}}, f.node)
	if err != nil {
		t.Fatal(err)
	}
	f.base, _ = serve(t, s)
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, []byte("for the team"), 0o644); err != nil {
		t.Fatal(err)
	}
	notes := decode[shards.Transfer](t, f.want(201, "POST", "/api/shards", fmt.Sprintf(`{"path": %q}`, path)))
	created := decode[PushCreated](t, f.want(201, "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "channel": "team", "plan": "chain"}`, notes.ID)))
	st := decode[shards.PushStatus](t, f.want(200, "GET", "/api/shards/push/"+created.ID, ""))
	var got []mesh.ID
	for _, r := range st.Receivers {
		got = append(got, r.Node)
	}
	if want := []mesh.ID{bravo, charlie}; !slices.Equal(got, want) || st.Plan != shards.PlanChain {
		t.Errorf("pushed to %v with %q, want %v with chain", got, st.Plan, want)
	}
	f.refuses([]badInput{
		{"unknown channel", "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "channel": "nobody"}`, notes.ID), 404, "unknown channel"},
		{"ambiguous name", "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "channel": "twins"}`, notes.ID), 400, "2 channels are named"},
		{"to and channel", "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "channel": "team", "to": [%q]}`, notes.ID, bravo), 400, "not both"},
		{"only this node", "POST", "/api/shards/push", fmt.Sprintf(`{"id": %q, "channel": "alone"}`, notes.ID), 400, "no online member but this node"},
	})
	if calls := f.files.callLog(); len(calls) != 1 {
		t.Errorf("calls %q: refused pushes reached the service", calls)
	}
}
