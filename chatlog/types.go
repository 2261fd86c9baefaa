package chatlog

import (
	"encoding/hex"
	"time"

	"github.com/catnest/catnest/mesh"
)

// ID names a message: SHA-256 of its signed fields.
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero ID (no reference).
func (id ID) IsZero() bool { return id == ID{} }

// ChannelID names a channel: the first 16 bytes of SHA-256 over its
// owner, name and nonce (see NewChannelID).
type ChannelID [16]byte

func (id ChannelID) String() string { return hex.EncodeToString(id[:]) }

// Kind is what a message does.
type Kind uint8

const (
	// KindText is a chat message; Body is UTF-8 text.
	KindText Kind = 1
	// KindRetract withdraws the message Ref; only its author may send it.
	KindRetract Kind = 2
	// KindSetting changes the channel's settings; only its owner may send
	// it. Body is JSON Settings.
	KindSetting Kind = 3
	// KindGuest is a chat message that a node posts on behalf of a guest
	// (a web page talking to it over PeerJS, see package guest); Body is
	// JSON GuestBody. The node signs it, so it is the node's word that
	// a guest of that name said this: the kind, which is signed, marks it
	// as a guest's, so no guest can pass for a member whatever name it
	// picks, and readers show it as "name (guest of the author node)".
	KindGuest Kind = 4
)

// text reports whether messages of kind k are chat text (a member's or a
// guest's): what retractions, count ranges and message lists are about.
func (k Kind) text() bool { return k == KindText || k == KindGuest }

// MaxGuestName bounds a guest's name in bytes.
const MaxGuestName = 64

// GuestBody is the body of a KindGuest message.
type GuestBody struct {
	Guest string `json:"guest"` // the name the guest chose
	Text  string `json:"text"`
}

// MaxBody bounds a message body.
const MaxBody = 16 << 10

// Message is a signed chat message. Decode checks the signature and ID;
// a *Message from this package has passed that check.
type Message struct {
	ID      ID
	Channel ChannelID
	Author  mesh.ID // derived from Key
	Key     []byte  // the author's SubjectPublicKeyInfo
	Time    int64   // unix milliseconds, the author's clock
	Kind    Kind
	Body    []byte
	Ref     ID // the retracted message, for KindRetract
	Sig     []byte
}

// When is the message time as a time.Time.
func (m *Message) When() time.Time { return time.UnixMilli(m.Time) }

// Settings are a channel's owner-controlled settings, the body of a
// KindSetting message.
type Settings struct {
	Burn bool `json:"burn"`
}

// Range is how much of a channel's history this device keeps: messages of
// the last Days days and/or the last Count messages (0 = no limit on that
// axis; both 0 keeps everything). Marked messages are kept regardless.
// Days that reach back before 1970 keep messages of any age: users type a
// huge number to mean "forever". The store enforces the range whenever a
// message is stored and periodically (see Store.Put, Store.PruneAll).
type Range struct {
	Days  int `json:"days"`
	Count int `json:"count"`
}

// Quota bounds what one channel may hold of the messages this device did
// not choose to keep: every message but marked ones and the owner's
// settings, whoever wrote them, so that a member who floods a channel, live
// or through history sync, cannot fill the disk. When a new message takes
// a channel over its quota, the oldest such messages make room (one older
// than all of them is not kept). 0 on an axis is no limit.
type Quota struct {
	Bytes int64 `json:"bytes"` // stored bytes
	Count int   `json:"count"` // messages
}

// maxStoredLen bounds one stored value: author length, author, encoding.
const maxStoredLen = 1 + 255 + MaxEncoded

// over reports whether u is more than q allows.
func (q Quota) over(u Usage) bool {
	return q.Bytes > 0 && u.Bytes > q.Bytes || q.Count > 0 && u.Count > q.Count
}

// full reports whether one more message could take u over q: from then on
// a channel keeps only messages newer than its oldest counted one.
func (q Quota) full(u Usage) bool {
	return q.Bytes > 0 && u.Bytes > q.Bytes-maxStoredLen || q.Count > 0 && u.Count >= q.Count
}

// Usage is what a channel holds, as its range and the quota count it.
type Usage struct {
	// Texts counts the text messages, marked or not: a count range keeps
	// the newest Count of them.
	Texts int `json:"texts"`
	// Count and Bytes are what the quota bounds: every message but marked
	// ones and settings, and their stored size.
	Count int   `json:"count"`
	Bytes int64 `json:"bytes"`
}

// Channel is a channel as this device knows it.
type Channel struct {
	ID      ChannelID `json:"-"`
	Name    string    `json:"name"`
	Owner   mesh.ID   `json:"owner"`
	Nonce   []byte    `json:"nonce"`
	Created int64     `json:"created"` // unix ms
	// Burn and SettingTime come from the newest owner setting seen.
	Burn        bool  `json:"burn"`
	SettingTime int64 `json:"setting_time"`
	Joined      bool  `json:"joined"`
	Range       Range `json:"range"`
}

// Item is what reconciliation compares: a message's time and ID.
type Item struct {
	Time int64
	ID   ID
}
