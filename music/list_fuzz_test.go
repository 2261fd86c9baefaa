package music

import (
	"testing"

	"github.com/catnest/catnest/internal/reslist"
)

// FuzzDecodePage feeds peer bytes to the track list page decoder: it
// never panics, and what it accepts is within the limits and encodes back
// to a page it accepts again, unchanged.
func FuzzDecodePage(f *testing.F) {
	ts, tags := genTracks(3, 9, "/m")
	var es []entry
	for _, tr := range ts {
		r := tags[tr.ID]
		es = append(es, entry{ID: tr.ID, Name: tr.Name, Title: r.Title, Artist: r.Artist, Format: "mp3", Duration: r.Duration})
	}
	l := reslist.NewLocal(entryKey, entryHash)
	for _, e := range es {
		l.Put(1, e)
	}
	good, err := encodePage(l.Page(reslist.Key{}, MaxPage))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"v":1,"e":[],"m":true}`))
	f.Add([]byte(`{"v":1,"e":[{"id":"00000000000000000000000000000000","n":"\u0000","f":"mp3"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePage(b)
		if err != nil {
			return
		}
		if len(p.Entries) > MaxPage {
			t.Fatalf("%d entries accepted", len(p.Entries))
		}
		for _, e := range p.Entries {
			if e.check() != nil {
				t.Fatalf("entry accepted that fails its check: %+v", e)
			}
		}
		again, err := encodePage(p)
		if err != nil {
			t.Fatalf("an accepted page does not encode: %v", err)
		}
		p2, err := decodePage(again)
		if err != nil || p2.Version != p.Version || len(p2.Entries) != len(p.Entries) {
			t.Fatalf("round trip: %v", err)
		}
		for i := range p.Entries {
			if p.Entries[i] != p2.Entries[i] {
				t.Fatalf("entry %d changed in a round trip", i)
			}
		}
	})
}
