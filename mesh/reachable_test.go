package mesh

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestReachable builds directories as nodes see them when others stop or
// die (their records still held, their neighbours' newer records silent
// about them) and checks which nodes Reachable keeps.
func TestReachable(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	rec := func(id string, heard int, nbs ...string) Record {
		r := Record{ID: ID(id), Heard: at(heard)}
		for _, nb := range nbs {
			r.Neighbors = append(r.Neighbors, ID(nb))
		}
		return r
	}
	for _, tc := range []struct {
		name string
		recs []Record
		want []string
	}{
		{"all linked", []Record{rec("self", 5, "a"), rec("a", 4, "self", "b"), rec("b", 3, "a")},
			[]string{"self", "a", "b"}},
		{"a stopped: self's newer record drops it", []Record{rec("self", 10), rec("a", 4, "self")},
			[]string{"self"}},
		{"b died: its only neighbour a no longer lists it",
			[]Record{rec("self", 5, "a"), rec("a", 9, "self"), rec("b", 3, "a")},
			[]string{"self", "a"}},
		{"b and c died together, still naming each other",
			[]Record{rec("self", 5, "a"), rec("a", 9, "self"), rec("b", 3, "a", "c"), rec("c", 3, "b", "a")},
			[]string{"self", "a"}},
		{"b joined: its record names a, a's does not name it yet",
			[]Record{rec("self", 5, "a"), rec("a", 4, "self"), rec("b", 6, "a")},
			[]string{"self", "a"}},
		{"b joined: both records name the link", []Record{rec("self", 5, "a"), rec("a", 7, "self", "b"),
			rec("b", 6, "a")},
			[]string{"self", "a", "b"}},
		{"b relinked from a to c", []Record{rec("self", 5, "a", "c"), rec("a", 9, "self"), rec("c", 11, "self", "b"),
			rec("b", 10, "c")},
			[]string{"self", "a", "c", "b"}},
		// h is hostile: its record is its word alone.
		{"h claims a link to v, whose own record names no one (v stopped)",
			[]Record{rec("self", 5, "a", "h"), rec("a", 6, "self"), rec("h", 20, "self", "v"), rec("v", 4)},
			[]string{"self", "a", "h"}},
		{"h claims a link to v, whose record names only a, which dropped it",
			[]Record{rec("self", 5, "a", "h"), rec("a", 9, "self"), rec("h", 20, "self", "v"), rec("v", 4, "a")},
			[]string{"self", "a", "h"}},
		{"h claims links to every node but cannot cut a's to v",
			[]Record{rec("self", 5, "a", "h"), rec("a", 6, "self", "v"), rec("h", 20, "self", "a", "v"), rec("v", 4, "a")},
			[]string{"self", "a", "h", "v"}},
		{"self alone: every link lost", []Record{rec("self", 20), rec("a", 4, "self", "b"), rec("b", 4, "a")},
			[]string{"self"}},
		{"own record not issued yet", []Record{rec("a", 4, "b"), rec("b", 4, "a")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range Reachable("self", slices.Clone(tc.recs)) {
				got = append(got, string(r.ID))
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("Reachable = %v, want %v", got, want)
			}
		})
	}

	// A hub's list is cut at MaxNeighbors: its silence about a node its
	// record could not hold proves nothing, the node's own word counts.
	hub := rec("hub", 9, "self")
	for i := range MaxNeighbors - 1 {
		hub.Neighbors = append(hub.Neighbors, ID(fmt.Sprintf("n%02d", i)))
	}
	recs := []Record{rec("self", 5, "hub"), hub, rec("leaf", 3, "hub")}
	if got := Reachable("self", recs); len(got) != 3 {
		t.Fatalf("a leaf of a full hub: %d reachable, want 3", len(got))
	}
	// Without the cut, the same silence means the leaf is gone.
	hub.Neighbors = hub.Neighbors[:2]
	recs[1] = hub
	if got := Reachable("self", recs); len(got) != 2 {
		t.Fatalf("a leaf its hub dropped: %d reachable, want 2", len(got))
	}
}
