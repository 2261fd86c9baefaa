package music

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// TestBanMatchesEveryHolder bans a track by the tags an honest holder
// lists it with while another holder, first by node id (whose tags are
// shown), lists it under other names: the track is still banned, and
// neither its audio (Stream, Prefetch) nor its cover or lyrics are
// served. The refusals come before shards is asked for anything (the
// Service has none).
func TestBanMatchesEveryHolder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, other := shards.MD5{1}, shards.MD5{2}
	honest := entry{ID: id, Size: 10, Name: "Banned Band - Hit.mp3", Title: "Hit", Artist: "Banned Band", Format: "mp3", Cover: shards.MD5{9}, Lyrics: shards.MD5{8}}
	liar := honest
	liar.Name, liar.Title, liar.Artist = "x.mp3", "Something Else", "Nobody"
	lists := map[mesh.ID][]entry{
		"a-liar":   {liar, {ID: other, Size: 1, Name: "fine.mp3", Title: "Fine", Format: "mp3"}},
		"b-honest": {honest},
	}
	s := &Service{lib: merge("c-self", lists), libSeq: 1}
	if got := s.lib[id].Artist; got != "Nobody" {
		t.Fatalf("shown artist %q: the test wants the liar's tags shown", got)
	}
	bans, err := compileBans([]string{`^Banned Band$`})
	if err != nil {
		t.Fatal(err)
	}
	s.bans = bans
	ts, err := s.Tracks(ctx, false)
	if err != nil || len(ts) != 1 || ts[0].MD5 != other {
		t.Fatalf("tracks not banned: %+v, %v", ts, err)
	}
	if all, _ := s.Tracks(ctx, true); len(all) != 2 || !all[0].Banned && !all[1].Banned {
		t.Fatalf("with the banned: %+v", all)
	}
	if _, err := s.Stream(ctx, id); !errors.Is(err, ErrBanned) {
		t.Fatalf("Stream: %v, want ErrBanned", err)
	}
	if err := s.Prefetch(ctx, id, 1<<20); !errors.Is(err, ErrBanned) {
		t.Fatalf("Prefetch: %v, want ErrBanned", err)
	}
	for _, thumb := range []bool{false, true} {
		if _, _, err := s.Cover(ctx, id, thumb); !errors.Is(err, ErrBanned) {
			t.Fatalf("Cover(thumb %v): %v, want ErrBanned", thumb, err)
		}
	}
	if _, err := s.Lyrics(ctx, id); !errors.Is(err, ErrBanned) {
		t.Fatalf("Lyrics: %v, want ErrBanned", err)
	}
}
