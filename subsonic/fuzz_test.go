package subsonic

import (
	"crypto/md5"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzAuthenticate feeds raw query strings (a client's bytes) to the
// parameter parsing and authentication: nothing panics, every refusal
// has a code and a message, and a login succeeds only with the password
// (plain, enc: hex, or the token of its salt).
func FuzzAuthenticate(f *testing.F) {
	const user, pass = "alice", "pässwörd"
	sum := md5.Sum([]byte(pass + "salt"))
	for _, s := range []string{
		"u=alice&p=" + url.QueryEscape(pass),
		"u=alice&p=enc:" + hex.EncodeToString([]byte(pass)),
		"u=alice&t=" + hex.EncodeToString(sum[:]) + "&s=salt",
		"u=alice&p=enc:zz",
		"u=alice&p=enc:0",
		"u=alice&t=&s=x",
		"apiKey=k",
		"u=%zz",
		"u=alice&p=" + strings.Repeat("%41", 3000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return // the request is refused with code 0 before this
		}
		p := params{v}
		e := authenticate(p, user, pass)
		if e != nil {
			if e.msg == "" || (e.code != codeMissingParam && e.code != codeWrongCreds && e.code != codeAuthMethod) {
				t.Fatalf("%q: %+v", raw, e)
			}
			return
		}
		if v.Get("u") != user {
			t.Fatalf("%q logged in as %q", raw, v.Get("u"))
		}
		if v.Has("t") || v.Has("s") {
			s := md5.Sum([]byte(pass + v.Get("s")))
			if !strings.EqualFold(v.Get("t"), hex.EncodeToString(s[:])) {
				t.Fatalf("%q: a token that is not the password's", raw)
			}
			return
		}
		got, e := decodePassword(v.Get("p"))
		if e != nil || got != pass {
			t.Fatalf("%q logged in with password %q", raw, got)
		}
	})
}

// FuzzParams feeds raw query strings to the numeric and list parameter
// readers: values are clamped into range, malformed ones are errors with
// a message, and nothing panics.
func FuzzParams(f *testing.F) {
	for _, s := range []string{
		"size=10&offset=0",
		"size=99999999999999999999999&offset=-99999999999999999999",
		"size=1e3",
		"size=-1",
		"size=+7",
		"size= 12 ",
		"submission=TRUE&time=1700000000000",
		"time=-5",
		"id=a&id=b&id=c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p := params{v}
		size, offset, e := p.page("size", "offset", defaultListSize, maxListSize)
		if e == nil && (size < 0 || size > maxListSize || offset < 0 || offset > maxOffset) {
			t.Fatalf("%q: size %d, offset %d out of range", raw, size, offset)
		}
		if e != nil && e.msg == "" {
			t.Fatalf("%q: error without a message", raw)
		}
		if _, e := p.boolean("submission", true); e != nil && e.code != codeGeneric {
			t.Fatalf("%q: %+v", raw, e)
		}
		now := time.Unix(1_700_000_000, 0)
		if tm, e := p.millis(p.str("time"), now); e == nil && (tm.Year() < 1970 || tm.Year() > 37000) {
			t.Fatalf("%q: time %v", raw, tm)
		}
		if ids, e := p.all("id"); e == nil && len(ids) != len(v["id"]) {
			t.Fatalf("%q: %d ids of %d", raw, len(ids), len(v["id"]))
		}
	})
}
