package calls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestCallStates walks one room through its states with pages on three
// nodes: join, a second joins, a third is refused, signals pass, one
// leaves, the third gets in.
func TestCallStates(t *testing.T) {
	testutil.CheckGoroutines(t)
	tn := newTestNet(t, 3)
	ctx := context.Background()
	a, b, c := tn.open(t, 0), tn.open(t, 1), tn.open(t, 2)
	const room = "kitchen"

	res, err := tn.svcs[0].Join(ctx, a.ID(), room)
	if err != nil || res.State != "joined" || res.Peer != nil {
		t.Fatalf("first join: %+v, %v", res, err)
	}
	expect(t, a, "joined")
	res, err = tn.svcs[1].Join(ctx, b.ID(), room)
	if err != nil || res.State != "joined" || res.Peer == nil || res.Peer.Node != tn.nodes[0].ID() || res.Peer.Name != "n0" || res.Initiator {
		t.Fatalf("second join: %+v, %v", res, err)
	}
	// The first negotiates; the second waits for its offer.
	if ev := expect(t, a, "other_joined")[0]; !ev.Initiator || ev.Peer.Node != tn.nodes[1].ID() {
		t.Fatalf("first member heard %+v", ev)
	}
	if ev := expect(t, b, "joined", "other_joined")[1]; ev.Initiator || ev.Peer.Node != tn.nodes[0].ID() {
		t.Fatalf("second member heard %+v", ev)
	}
	res, err = tn.svcs[2].Join(ctx, c.ID(), room)
	if err != nil || res.State != "full" {
		t.Fatalf("third join: %+v, %v", res, err)
	}
	expect(t, c, "full")
	if err := tn.svcs[2].Signal(ctx, c.ID(), room, Signal{Type: "offer", SDP: sdpOffer}); !errors.Is(err, ErrNoPeer) {
		t.Fatalf("signal from the refused page: %v", err)
	}

	// Offer, answer and candidates go to the other page only.
	if err := tn.svcs[0].Signal(ctx, a.ID(), room, Signal{Type: "offer", SDP: sdpOffer}); err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, b, "offer")[0]; ev.SDP != sdpOffer {
		t.Fatalf("offer arrived as %+v", ev)
	}
	mid := "0"
	cand := &Candidate{Candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", SDPMid: &mid}
	if err := tn.svcs[1].Signal(ctx, b.ID(), room, Signal{Type: "answer", SDP: sdpOffer}); err != nil {
		t.Fatal(err)
	}
	if err := tn.svcs[1].Signal(ctx, b.ID(), room, Signal{Type: "candidate", Candidate: cand}); err != nil {
		t.Fatal(err)
	}
	evs := expect(t, a, "answer", "candidate")
	if evs[1].Candidate == nil || evs[1].Candidate.Candidate != cand.Candidate || *evs[1].Candidate.SDPMid != "0" {
		t.Fatalf("candidate arrived as %+v", evs[1])
	}

	// Joining again only reports the state.
	if res, err := tn.svcs[0].Join(ctx, a.ID(), room); err != nil || res.State != "joined" || res.Peer == nil || !res.Initiator {
		t.Fatalf("join again: %+v, %v", res, err)
	}
	if _, err := tn.svcs[0].Join(ctx, a.ID(), "elsewhere"); !errors.Is(err, ErrInOtherRoom) {
		t.Fatalf("join a second room: %v", err)
	}

	if err := tn.svcs[0].Leave(ctx, a.ID(), room); err != nil {
		t.Fatal(err)
	}
	expect(t, b, "other_left")
	res, err = tn.svcs[2].Join(ctx, c.ID(), room)
	if err != nil || res.State != "joined" || res.Peer == nil || res.Peer.Node != tn.nodes[1].ID() {
		t.Fatalf("join after a leave: %+v, %v", res, err)
	}
	// b is now the first member: it negotiates with c.
	if ev := expect(t, b, "other_joined")[0]; !ev.Initiator || ev.Peer.Node != tn.nodes[2].ID() {
		t.Fatalf("b heard %+v", ev)
	}
	expect(t, c, "joined", "other_joined")
	if evs := drain(a); len(evs) != 0 {
		t.Fatalf("the page that left heard %+v", evs)
	}
}

// TestJoinRace has many pages on many nodes join rooms at once: in each
// room exactly two get in, each knows the other, and the owner agrees.
func TestJoinRace(t *testing.T) {
	testutil.CheckGoroutines(t)
	t.Run("three at once", func(t *testing.T) {
		tn := newTestNet(t, 3)
		for r := range 12 {
			room := fmt.Sprintf("trio-%d", r)
			sessions := []*Session{tn.open(t, 0), tn.open(t, 1), tn.open(t, 2)}
			checkTwoIn(t, tn, room, sessions, joinAll(t, room, sessions))
			for _, s := range sessions {
				s.Close()
			}
		}
	})
	t.Run("many on many nodes", func(t *testing.T) {
		const nodes, rooms, perNode = 12, 6, 2
		tn := newTestNet(t, nodes)
		var wgErr = make(chan error, rooms)
		results := make([][]JoinResult, rooms)
		sessions := make([][]*Session, rooms)
		for r := range rooms {
			for i := range nodes * perNode {
				sessions[r] = append(sessions[r], tn.open(t, i%nodes))
			}
		}
		done := make(chan struct{})
		for r := range rooms {
			go func() {
				defer func() { done <- struct{}{} }()
				room := fmt.Sprintf("crowd-%d", r)
				res := make([]JoinResult, len(sessions[r]))
				errs := make(chan error, len(sessions[r]))
				var n int
				for i, s := range sessions[r] {
					n++
					go func() {
						ctx, cancel := context.WithTimeout(context.Background(), wait)
						defer cancel()
						var err error
						res[i], err = s.svc.Join(ctx, s.ID(), room)
						errs <- err
					}()
				}
				for range n {
					if err := <-errs; err != nil {
						wgErr <- err
						return
					}
				}
				results[r] = res
			}()
		}
		for range rooms {
			<-done
		}
		close(wgErr)
		for err := range wgErr {
			t.Fatal(err)
		}
		for r := range rooms {
			checkTwoIn(t, tn, fmt.Sprintf("crowd-%d", r), sessions[r], results[r])
		}
		var routed, expanded int64
		for _, s := range tn.svcs {
			routed += s.routed.Load()
			expanded += s.expanded.Load()
		}
		t.Logf("%d call messages went along routes, %d over links made for them", routed, expanded)
		if routed == 0 {
			t.Fatal("no message went along a route: the owners were all neighbours")
		}
	})
}

// checkTwoIn checks that exactly two of sessions joined room, that each has
// the other as its peer, that the others were told "full", and that the
// room's owner holds those two.
func checkTwoIn(t *testing.T, tn *testNet, room string, sessions []*Session, res []JoinResult) {
	t.Helper()
	var in []*Session
	for i, r := range res {
		switch r.State {
		case "joined":
			in = append(in, sessions[i])
		case "full":
			if evs := drain(sessions[i]); len(evs) != 1 || evs[0].Type != "full" {
				t.Errorf("%s: a refused page heard %+v", room, evs)
			}
		default:
			t.Fatalf("%s: join %d: state %q", room, i, r.State)
		}
	}
	if len(in) != 2 {
		t.Fatalf("%s: %d of %d joiners got in, want 2", room, len(in), len(sessions))
	}
	testutil.WaitFor(t, wait, room+": both members to know each other", func() bool {
		p0, p1 := peerOf(in[0]), peerOf(in[1])
		return p0 != nil && p1 != nil && *p0 == member(in[1]) && *p1 == member(in[0])
	})
	got := tn.svcs[tn.ownerIndex(room)].own.members(room)
	if len(got) != 2 || !(got[0] == member(in[0]) && got[1] == member(in[1]) || got[0] == member(in[1]) && got[1] == member(in[0])) {
		t.Fatalf("%s: owner holds %+v", room, got)
	}
	// Exactly one of the two makes the offer.
	initiators := 0
	for _, s := range in {
		for _, ev := range drain(s) {
			if ev.Type == "other_joined" && ev.Initiator {
				initiators++
			}
		}
	}
	if initiators != 1 {
		t.Fatalf("%s: %d members were told to make the offer, want 1", room, initiators)
	}
}

// TestPageGoneLeaves: a page whose session closes (its event stream went
// away) leaves the room, and the other member hears so.
func TestPageGoneLeaves(t *testing.T) {
	testutil.CheckGoroutines(t)
	tn := newTestNet(t, 3)
	ctx := context.Background()
	a, b := tn.open(t, 0), tn.open(t, 1)
	room := tn.roomOwnedBy(t, 2, "hall")
	joinPair(t, room, a, b)
	a.Close()
	testutil.WaitFor(t, wait, "b to hear that a left", func() bool {
		for _, ev := range drain(b) {
			if ev.Type == "other_left" {
				return true
			}
		}
		return false
	})
	if got := tn.svcs[2].own.members(room); len(got) != 1 || got[0] != member(b) {
		t.Fatalf("owner holds %+v", got)
	}
	if _, err := tn.svcs[0].Join(ctx, a.ID(), room); !errors.Is(err, ErrNoSession) {
		t.Fatalf("join with a closed session: %v", err)
	}
}

// TestMemberNodeDies: when a member's node dies without a word, the
// owner drops its seat when the lease runs out and the other member hears
// that it left.
func TestMemberNodeDies(t *testing.T) {
	testutil.CheckGoroutines(t)
	tn := newTestNet(t, 3)
	a, b := tn.open(t, 0), tn.open(t, 1)
	room := tn.roomOwnedBy(t, 2, "porch")
	joinPair(t, room, a, b)
	tn.nw.Kill(tn.nodes[0].ID())
	testutil.WaitFor(t, wait, "b to hear that a's node is gone", func() bool {
		for _, ev := range drain(b) {
			if ev.Type == "other_left" {
				return true
			}
		}
		return false
	})
	if got := tn.svcs[2].own.members(room); len(got) != 1 || got[0] != member(b) {
		t.Fatalf("owner holds %+v", got)
	}
}

// TestOwnerDies: when the room's owner dies, the members take their seats
// to the next owner without a break (neither hears the other leave), and
// a newcomer there finds the room full.
func TestOwnerDies(t *testing.T) {
	testutil.CheckGoroutines(t)
	tn := newTestNet(t, 4)
	a, b, c := tn.open(t, 1), tn.open(t, 2), tn.open(t, 3)
	room := tn.roomOwnedBy(t, 0, "attic")
	joinPair(t, room, a, b)
	ids := []mesh.ID{tn.nodes[1].ID(), tn.nodes[2].ID(), tn.nodes[3].ID()}
	heir := rank(room, ids)[0]
	var heirSvc *Service
	for _, s := range tn.svcs {
		if s.self == heir {
			heirSvc = s
		}
	}
	tn.nw.Kill(tn.nodes[0].ID())
	testutil.WaitFor(t, wait, "both members to move to the next owner", func() bool {
		got := heirSvc.own.members(room)
		if len(got) != 2 {
			return false
		}
		heirSvc.own.mu.Lock()
		defer heirSvc.own.mu.Unlock()
		for _, s := range heirSvc.own.rooms[room].seats {
			if s.reserved {
				return false
			}
		}
		return true
	})
	res, err := tn.svcs[3].Join(context.Background(), c.ID(), room)
	if err != nil || res.State != "full" {
		t.Fatalf("a newcomer at the next owner: %+v, %v", res, err)
	}
	for _, s := range []*Session{a, b} {
		for _, ev := range drain(s) {
			if ev.Type != "joined" && ev.Type != "other_joined" || ev.Type == "other_joined" && ev.Peer == nil {
				t.Errorf("a member heard %+v while the room moved", ev)
			}
			if ev.Type == "other_left" {
				t.Errorf("a member heard the other leave while the room moved")
			}
		}
	}
	if p := peerOf(a); p == nil || *p != member(b) {
		t.Fatalf("a's peer is %+v", p)
	}
}

// TestBadInput: a hostile node's malformed, oversized and forged call
// messages are refused and change nothing; pages' bad room names and
// signals get clear errors.
func TestBadInput(t *testing.T) {
	testutil.CheckGoroutines(t)
	tn := newTestNet(t, 3, func(c *Config) { c.MaxSeatsPerNode = 4; c.SignalWait = 200e6 })
	ctx := context.Background()
	a, b := tn.open(t, 0), tn.open(t, 1)
	room := tn.roomOwnedBy(t, 0, "den")
	joinPair(t, room, a, b)
	// The hostile node runs no service: it speaks the protocol by hand.
	evil := tn.nw.NewNode(t, "evil", meshtest.Options{Configure: meshtest.Fast})
	testutil.WaitFor(t, wait, "a link to the hostile node", func() bool {
		return evil.Connect(ctx, tn.nodes[1].ID()) == nil && evil.Connect(ctx, tn.nodes[0].ID()) == nil
	})
	var seq uint64
	send := func(to int, v any) error {
		b, ok := v.([]byte)
		if !ok {
			if r, ok := v.(request); ok {
				seq++
				r.Seq = seq
				v = r
			}
			b, _ = json.Marshal(v)
		}
		_, err := evil.Request(ctx, tn.nodes[to].ID(), Protocol, b)
		return err
	}
	for _, tt := range []struct {
		name string
		to   int
		msg  any
		want string
	}{
		{"signal from a non-member", 1, request{Op: opSignal, Room: room, Session: b.ID(), From: a.ID(), Signal: &Signal{Type: "offer", SDP: sdpOffer}}, "not the room's other member"},
		{"signal to a session in no room", 1, request{Op: opSignal, Room: "other", Session: b.ID(), From: "x", Signal: &Signal{Type: "offer", SDP: sdpOffer}}, "not the room's other member"},
		{"oversized signal", 1, request{Op: opSignal, Room: room, Session: b.ID(), From: "x", Signal: &Signal{Type: "offer", SDP: sdpOffer + strings.Repeat("a=x\r\n", MaxSDP/5)}}, "SDP of"},
		{"oversized message", 1, []byte(`{"op":"signal","pad":"` + strings.Repeat("x", MaxMessage) + `"}`), "limit"},
		{"bad SDP", 1, request{Op: opSignal, Room: room, Session: b.ID(), From: "x", Signal: &Signal{Type: "offer", SDP: "hello"}}, "SDP"},
		{"bad room name", 0, request{Op: opJoin, Room: "../etc", Session: "abc"}, "bad room name"},
		{"bad session", 0, request{Op: opJoin, Room: room, Session: "a b"}, "session"},
		{"not JSON", 1, []byte("{"), "bad call message"},
		{"unknown op", 1, request{Op: "kick", Room: room, Session: b.ID()}, "unknown"},
		{"forged notice", 1, request{Op: opState, Room: room, Session: b.ID(), State: "joined", Epoch: 1 << 62, Peer: &Member{Node: evil.ID(), Session: "evil"}}, "not from the session's room owner"},
		{"forged notice of full", 1, request{Op: opState, Room: room, Session: b.ID(), State: "full", Epoch: 1 << 62}, "not from the session's room owner"},
		{"leave for another's session", 0, request{Op: opLeave, Room: room, Session: a.ID()}, ""},
		{"join the full room", 0, request{Op: opJoin, Room: room, Session: "evil1"}, ""},
	} {
		err := send(tt.to, tt.msg)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	if got := tn.svcs[0].own.members(room); len(got) != 2 || got[0] != member(a) && got[0] != member(b) {
		t.Fatalf("the owner holds %+v after the attacks", got)
	}
	if p := peerOf(b); p == nil || *p != member(a) {
		t.Fatalf("b's peer is %+v after the attacks", p)
	}
	if evs := drain(b); len(evs) != 0 {
		t.Fatalf("b heard %+v from the hostile node", evs)
	}
	// A node cannot take more than its share of seats; others still get in.
	squats := tn.roomsOwnedBy(t, 0, "squat", 6)
	for i, r := range squats[:5] {
		err := send(0, request{Op: opJoin, Room: r, Session: "evil"})
		if i < 4 && err != nil || i == 4 && (err == nil || !strings.Contains(err.Error(), errBusy.Error())) {
			t.Fatalf("seat %d of the hostile node: %v", i, err)
		}
	}
	if res, err := tn.svcs[1].Join(ctx, tn.open(t, 1).ID(), squats[5]); err != nil || res.State != "joined" {
		t.Fatalf("an honest join after the squat: %+v, %v", res, err)
	}
	// Pages' bad input.
	for _, name := range []string{"", "a b", "../x", "-x", "x/y", "x%00", strings.Repeat("x", MaxRoomName+1), "\xff"} {
		if _, err := tn.svcs[0].Join(ctx, a.ID(), name); !errors.Is(err, ErrBadRoom) {
			t.Errorf("room %q: %v, want ErrBadRoom", name, err)
		}
	}
	for _, name := range []string{"kitchen", "猫窝", "a.b-c_d", strings.Repeat("x", MaxRoomName)} {
		if err := CheckRoom(name); err != nil {
			t.Errorf("room %q: %v", name, err)
		}
	}
	for _, sig := range []Signal{
		{Type: "offer"},
		{Type: "offer", SDP: strings.Repeat("x", MaxSDP+1)},
		{Type: "answer", SDP: "not sdp"},
		{Type: "candidate"},
		{Type: "candidate", Candidate: &Candidate{Candidate: strings.Repeat("x", 2000)}},
		{Type: "bye"},
	} {
		if err := tn.svcs[0].Signal(ctx, a.ID(), room, sig); !errors.Is(err, ErrBadSignal) {
			t.Errorf("signal %.40q: %v, want ErrBadSignal", sig.Type+sig.SDP, err)
		}
	}
	if _, err := tn.svcs[0].Join(ctx, "nosuchsession", room); !errors.Is(err, ErrNoSession) {
		t.Errorf("unknown session: %v", err)
	}
}
