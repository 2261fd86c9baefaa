package chatlog

import (
	"errors"
	"strings"
	"testing"

	"github.com/catnest/catnest/mesh"
)

func TestChannel(t *testing.T) {
	owner := newIdent(t).ID
	c := NewChannel(owner, "general")
	if err := c.Verify(); err != nil {
		t.Fatal(err)
	}
	if len(c.Nonce) != nonceLen || c.Created == 0 {
		t.Errorf("channel %+v: want a nonce and a creation time", c)
	}
	if d := NewChannel(owner, "general"); d.ID == c.ID {
		t.Error("two channels of the same name and owner share an ID")
	}
	if NewChannelID(owner, "ab", []byte("c")) == NewChannelID(owner, "a", []byte("bc")) {
		t.Error("fields are not length-prefixed")
	}
	id, err := ParseChannelID(c.ID.String())
	if err != nil || id != c.ID {
		t.Errorf("ParseChannelID(%s) = %v, %v", c.ID, id, err)
	}

	bad := map[string]func(c *Channel){
		"other name":      func(c *Channel) { c.Name = "generals" },
		"other owner":     func(c *Channel) { c.Owner = newIdent(t).ID },
		"other nonce":     func(c *Channel) { c.Nonce[0] ^= 1 },
		"empty name":      func(c *Channel) { c.Name = "" },
		"long name":       func(c *Channel) { c.Name = strings.Repeat("é", MaxChannelName+1) },
		"control char":    func(c *Channel) { c.Name = "a\nb" },
		"invalid UTF-8":   func(c *Channel) { c.Name = "a\xffb" },
		"owner not an id": func(c *Channel) { c.Owner = mesh.ID("Owner") },
	}
	for name, change := range bad {
		d := NewChannel(owner, "general")
		change(&d)
		if name != "other name" && name != "other owner" && name != "other nonce" {
			d.ID = NewChannelID(d.Owner, d.Name, d.Nonce) // only the rule on the name or owner fails
		}
		if err := d.Verify(); !errors.Is(err, ErrBadChannel) {
			t.Errorf("%s: Verify = %v, want ErrBadChannel", name, err)
		}
	}
	long := NewChannel(owner, strings.Repeat("猫", MaxChannelName))
	if err := long.Verify(); err != nil {
		t.Errorf("name of %d runes: %v", MaxChannelName, err)
	}
}

func TestParseIDs(t *testing.T) {
	id := ID{0xab, 1}
	if got, err := ParseID(id.String()); err != nil || got != id {
		t.Errorf("ParseID(%s) = %v, %v", id, got, err)
	}
	for _, s := range []string{"", "ab", id.String() + "00", strings.Repeat("zz", 32)} {
		if _, err := ParseID(s); !errors.Is(err, ErrBadMessage) {
			t.Errorf("ParseID(%q) = %v, want ErrBadMessage", s, err)
		}
	}
	for _, s := range []string{"", ChannelID{}.String() + "0", strings.Repeat("g", 32)} {
		if _, err := ParseChannelID(s); !errors.Is(err, ErrBadChannel) {
			t.Errorf("ParseChannelID(%q) = %v, want ErrBadChannel", s, err)
		}
	}
}
