package chatlog

import (
	"errors"
	"time"
)

// ChannelInfo is a channel as the web UI and the API show it.
type ChannelInfo struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Owner     string `json:"owner"`
	OwnerName string `json:"owner_name"`
	Joined    bool   `json:"joined"`
	Burn      bool   `json:"burn"`
	Range     Range  `json:"range"`
	// Members counts the online nodes that advertise the channel.
	Members int `json:"members"`
}

// MessageView is a message as the web UI and the API show it.
type MessageView struct {
	ID         string    `json:"id"`
	Channel    string    `json:"channel"`
	Author     string    `json:"author"`
	AuthorName string    `json:"author_name"`
	Time       time.Time `json:"time"`
	Text       string    `json:"text"`
	Retracted  bool      `json:"retracted"`
	Marked     bool      `json:"marked"`
	// Burn: delivered live from a burn-after-read channel; gone once read.
	Burn bool `json:"burn"`
	// Mine: written by this node.
	Mine bool `json:"mine"`
}

// Event is a change the web UI follows live.
type Event struct {
	// Type is "message" (new), "retract", "burned" (a burn message was
	// read and is gone), or "channel" (the channel list changed).
	Type    string       `json:"type"`
	Channel string       `json:"channel,omitempty"`
	Message *MessageView `json:"message,omitempty"`
	// ID is the retracted or burned message.
	ID string `json:"id,omitempty"`
}

// Errors of the chat service that callers (the web API) map to statuses.
var (
	// ErrUnknownChannel: no such channel (404).
	ErrUnknownChannel = errors.New("chatlog: unknown channel")
	// ErrUnknownMessage: no such message in the channel (404).
	ErrUnknownMessage = errors.New("chatlog: unknown message")
	// ErrNotOwner: only the channel's owner may do that (403).
	ErrNotOwner = errors.New("chatlog: only the channel owner may do that")
	// ErrNotAuthor: only the message's author may do that (403).
	ErrNotAuthor = errors.New("chatlog: only the author may do that")
	// ErrInvalidInput: the request is malformed (400).
	ErrInvalidInput = errors.New("chatlog: invalid input")
	// ErrNotJoined: join the channel first (409).
	ErrNotJoined = errors.New("chatlog: not joined to the channel")
)
