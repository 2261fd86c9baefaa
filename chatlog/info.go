package chatlog

import (
	"time"

	"github.com/catnest/catnest/mesh"
)

// ChannelInfo is a channel this node has joined or knows, or one that
// online nodes advertise. How it is shown (the owner's name) is the
// caller's business.
type ChannelInfo struct {
	ID     string
	Name   string
	Owner  mesh.ID
	Joined bool
	Burn   bool
	// Range is this device's storage range; zero for a channel only
	// advertised.
	Range Range
	// Members counts the online nodes that advertise the channel.
	Members int
}

// Entry is a text message of a channel with its state at this node.
type Entry struct {
	ID      string
	Channel string
	Author  mesh.ID
	Time    time.Time
	// Text is empty once the message is retracted.
	Text string
	// Guest is the name a guest chose, for a message that Author posted
	// on a guest's behalf (KindGuest); empty for a member's own.
	Guest     string
	Retracted bool
	Marked    bool
	// Burn: delivered live from a burn-after-read channel; gone once read.
	Burn bool
}

// Event is a change to the chat, for those that follow it live.
type Event struct {
	// Type is "message" (new), "retract", "burned" (a burn message was
	// read and is gone), or "channel" (the channel list changed).
	Type    string
	Channel string
	// Message is the new message of a "message" event.
	Message *Entry
	// ID is the retracted or burned message.
	ID string
}
