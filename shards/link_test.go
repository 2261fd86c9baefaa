package shards

import (
	"errors"
	"strings"
	"testing"

	"github.com/catnest/catnest/mesh"
)

func testNodeID(t testing.TB) mesh.ID {
	t.Helper()
	id, err := mesh.ParseID(strings.Repeat("a", 32))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestLinkRoundTrip(t *testing.T) {
	l := Link{
		Node:       testNodeID(t),
		Rendezvous: "127.0.0.1:9000",
		Channel:    FilesChannel,
		ID:         MD5{1, 2, 3},
		Manifest:   Hash{4, 5, 6},
		Name:       "holiday photo & notes?.jpg",
		Size:       12345,
	}
	s := l.String()
	if !strings.HasPrefix(s, "webrtc://"+strings.Repeat("a", 32)+"@127.0.0.1:9000/files/01020300") {
		t.Fatalf("link %s", s)
	}
	got, err := ParseLink(s)
	if err != nil {
		t.Fatal(err)
	}
	if got != l {
		t.Fatalf("round trip: %+v, want %+v", got, l)
	}
	l.Rendezvous = ""
	if got, err := ParseLink(l.String()); err != nil || got != l {
		t.Fatalf("without rendezvous: %+v, %v", got, err)
	}
}

func TestParseLinkRejects(t *testing.T) {
	id := strings.Repeat("a", 32)
	md := strings.Repeat("0", 32)
	for _, s := range []string{
		"",
		"http://" + id + "@h:1/files/" + md,
		"webrtc://h:1/files/" + md,
		"webrtc://nope@h:1/files/" + md,
		"webrtc://" + id + "@h:99999/files/" + md,
		"webrtc://" + id + "@h:1/files/" + md[:31],
		"webrtc://" + id + "@h:1/" + md,
		"webrtc://" + id + "@h:1/a/b/" + md,
		"webrtc://" + id + "@h:1/files/" + md + "?m=zz",
		"webrtc://" + id + "@h:1/files/" + md + "?n=..%2F..%2Fetc%2Fpasswd",
		"webrtc://" + id + "@h:1/files/" + md + "?n=..",
		"webrtc://" + id + "@h:1/files/" + md + "?n=a%00b",
		"webrtc://" + id + "@h:1/files/" + md + "?s=-1",
		"webrtc://" + id + "@h:1/files/" + md + "?n=" + strings.Repeat("x", MaxLinkLen),
	} {
		if _, err := ParseLink(s); !errors.Is(err, ErrBadLink) {
			t.Errorf("%.80q: %v, want ErrBadLink", s, err)
		}
	}
}

func FuzzParseLink(f *testing.F) {
	f.Add("webrtc://" + strings.Repeat("a", 32) + "@127.0.0.1:9000/files/" + strings.Repeat("0", 32) + "?m=" + strings.Repeat("1", 64) + "&n=a.txt&s=5")
	f.Add("webrtc://x@/a/b")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLink(s)
		if err != nil {
			return
		}
		again, err := ParseLink(l.String())
		if err != nil || again != l {
			t.Fatalf("%q parsed to %+v, which does not round-trip: %+v %v", s, l, again, err)
		}
		if strings.ContainsAny(l.Name, `/\`) {
			t.Fatalf("name %q has a separator", l.Name)
		}
	})
}
