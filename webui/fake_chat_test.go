package webui

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh"
)

// fakeChat is a Chat kept in memory, for the API and browser tests. It
// behaves like the service where the UI can tell: it checks ownership and
// authorship, echoes changes as events, and forgets a burn message once it
// is read. It is safe for concurrent use.
type fakeChat struct {
	self mesh.ID

	mu       sync.Mutex
	channels map[string]*fakeChannel
	events   pubsub.Topic[chatlog.Event]
	// stalled, when set, is published to each new subscription before
	// its reader starts, as if the reader had been too slow for them.
	stalled []chatlog.Event
	seq     int
	reads   []string // IDs passed to Read, in order
	fail    error    // returned once by the next call, when set
	now     func() time.Time
}

type fakeChannel struct {
	info chatlog.ChannelInfo
	msgs []chatlog.Entry // oldest first
}

var (
	_ Chat = (*fakeChat)(nil)
	_ Chat = (*chatlog.Service)(nil) // cmd/catnest passes the real service
)

func newFakeChat(self mesh.ID) *fakeChat {
	return &fakeChat{
		self:     self,
		channels: map[string]*fakeChannel{},
		now:      time.Now,
	}
}

// addChannel adds a channel as it is, with no event.
func (f *fakeChat) addChannel(info chatlog.ChannelInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.channels[info.ID] = &fakeChannel{info: info}
}

// receive adds a message from someone, as if it arrived from the mesh, and
// sends the "message" event. It returns the message with its ID.
func (f *fakeChat) receive(channel string, m chatlog.Entry) chatlog.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := f.channels[channel]
	if m.ID == "" {
		m.ID = f.nextID()
	}
	m.Channel = channel
	if m.Time.IsZero() {
		m.Time = f.now()
	}
	ch.msgs = append(ch.msgs, m)
	f.notify(chatlog.Event{Type: "message", Channel: channel, Message: &m})
	return m
}

// emit sends ev to the subscribers.
func (f *fakeChat) emit(ev chatlog.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notify(ev)
}

// failNext makes the next call return err.
func (f *fakeChat) failNext(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// readIDs returns the IDs Read was called with.
func (f *fakeChat) readIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reads)
}

// message returns a message by channel and ID.
func (f *fakeChat) message(channel, id string) (chatlog.Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch := f.channels[channel]; ch != nil {
		for _, m := range ch.msgs {
			if m.ID == id {
				return m, true
			}
		}
	}
	return chatlog.Entry{}, false
}

// subscribers is the number of subscriptions not yet cancelled.
func (f *fakeChat) subscribers() int { return f.events.Len() }

func (f *fakeChat) nextID() string {
	f.seq++
	return fmt.Sprintf("%064x", f.seq)
}

// notify sends ev to every subscriber, dropping it for those that are
// full. f.mu is held.
func (f *fakeChat) notify(ev chatlog.Event) { f.events.Publish(ev) }

// begin locks f and returns the injected failure, if any. The caller
// unlocks.
func (f *fakeChat) begin() error {
	f.mu.Lock()
	err := f.fail
	f.fail = nil
	return err
}

// channel returns the channel id; f.mu is held.
func (f *fakeChat) channel(id string) (*fakeChannel, error) {
	ch := f.channels[id]
	if ch == nil {
		return nil, fmt.Errorf("channel %q: %w", id, chatlog.ErrUnknownChannel)
	}
	return ch, nil
}

// joined returns the channel id if this node has joined it; f.mu is held.
func (f *fakeChat) joined(id string) (*fakeChannel, error) {
	ch, err := f.channel(id)
	if err == nil && !ch.info.Joined {
		err = fmt.Errorf("channel %q: %w", id, chatlog.ErrNotJoined)
	}
	return ch, err
}

// find returns the index of message id in ch; f.mu is held.
func (ch *fakeChannel) find(id string) (int, error) {
	i := slices.IndexFunc(ch.msgs, func(m chatlog.Entry) bool { return m.ID == id })
	if i < 0 {
		return 0, fmt.Errorf("message %q: %w", id, chatlog.ErrUnknownMessage)
	}
	return i, nil
}

// joinedMessage finds message id of a joined channel; f.mu is held.
func (f *fakeChat) joinedMessage(channel, id string) (*fakeChannel, int, error) {
	ch, err := f.joined(channel)
	if err != nil {
		return nil, 0, err
	}
	i, err := ch.find(id)
	if err != nil {
		return nil, 0, err
	}
	return ch, i, nil
}

func (f *fakeChat) Channels(ctx context.Context) ([]chatlog.ChannelInfo, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return nil, err
	}
	var out []chatlog.ChannelInfo // nil when empty: the server must send []
	for _, ch := range f.channels {
		out = append(out, ch.info)
	}
	return out, nil
}

func (f *fakeChat) CreateChannel(ctx context.Context, name string, burn bool) (chatlog.ChannelInfo, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return chatlog.ChannelInfo{}, err
	}
	f.seq++
	info := chatlog.ChannelInfo{
		ID:      fmt.Sprintf("%032x", f.seq),
		Name:    name,
		Owner:   f.self,
		Joined:  true,
		Burn:    burn,
		Members: 1,
	}
	f.channels[info.ID] = &fakeChannel{info: info}
	f.notify(chatlog.Event{Type: "channel", Channel: info.ID})
	return info, nil
}

func (f *fakeChat) setJoined(id string, on bool) error {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return err
	}
	ch, err := f.channel(id)
	if err != nil {
		return err
	}
	ch.info.Joined = on
	f.notify(chatlog.Event{Type: "channel", Channel: id})
	return nil
}

func (f *fakeChat) Join(ctx context.Context, channel string) error {
	return f.setJoined(channel, true)
}

func (f *fakeChat) Leave(ctx context.Context, channel string) error {
	return f.setJoined(channel, false)
}

func (f *fakeChat) Messages(ctx context.Context, channel string, before time.Time, limit int) ([]chatlog.Entry, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return nil, err
	}
	ch, err := f.joined(channel)
	if err != nil {
		return nil, err
	}
	var out []chatlog.Entry // nil when empty: the server must send []
	for _, m := range ch.msgs {
		if before.IsZero() || m.Time.Before(before) {
			out = append(out, m)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return slices.Clone(out), nil
}

func (f *fakeChat) Post(ctx context.Context, channel, text string) (chatlog.Entry, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return chatlog.Entry{}, err
	}
	ch, err := f.joined(channel)
	if err != nil {
		return chatlog.Entry{}, err
	}
	m := chatlog.Entry{
		ID:      f.nextID(),
		Channel: channel,
		Author:  f.self,
		Time:    f.now(),
		Text:    text,
		Burn:    ch.info.Burn,
	}
	ch.msgs = append(ch.msgs, m)
	f.notify(chatlog.Event{Type: "message", Channel: channel, Message: &m})
	return m, nil
}

func (f *fakeChat) Retract(ctx context.Context, channel, id string) error {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return err
	}
	ch, i, err := f.joinedMessage(channel, id)
	if err != nil {
		return err
	}
	if ch.msgs[i].Author != f.self {
		return fmt.Errorf("retract %s: %w", id, chatlog.ErrNotAuthor)
	}
	ch.msgs[i].Retracted = true
	ch.msgs[i].Text = ""
	f.notify(chatlog.Event{Type: "retract", Channel: channel, ID: id})
	return nil
}

func (f *fakeChat) Mark(ctx context.Context, channel, id string, on bool) error {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return err
	}
	ch, i, err := f.joinedMessage(channel, id)
	if err != nil {
		return err
	}
	ch.msgs[i].Marked = on
	return nil
}

func (f *fakeChat) SetSettings(ctx context.Context, channel string, r *chatlog.Range, burn *bool) error {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return err
	}
	ch, err := f.channel(channel)
	if err != nil {
		return err
	}
	if burn != nil && ch.info.Owner != f.self {
		return fmt.Errorf("burn setting: %w", chatlog.ErrNotOwner)
	}
	if r != nil {
		ch.info.Range = *r
	}
	if burn != nil {
		ch.info.Burn = *burn
	}
	f.notify(chatlog.Event{Type: "channel", Channel: channel})
	return nil
}

func (f *fakeChat) Read(ctx context.Context, channel, id string) error {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return err
	}
	ch, i, err := f.joinedMessage(channel, id)
	if err != nil {
		return err
	}
	if !ch.msgs[i].Burn {
		return fmt.Errorf("read %s: not a burn message: %w", id, chatlog.ErrInvalidInput)
	}
	f.reads = append(f.reads, id)
	ch.msgs = slices.Delete(ch.msgs, i, i+1)
	f.notify(chatlog.Event{Type: "burned", Channel: channel, ID: id})
	return nil
}

// fakeChatBuffer is the buffer of the fake's subscriptions.
const fakeChatBuffer = 64

func (f *fakeChat) SubscribeChat() *pubsub.Subscription[chatlog.Event] {
	sub := f.events.Subscribe(fakeChatBuffer)
	f.mu.Lock()
	for _, ev := range f.stalled {
		f.events.Publish(ev)
	}
	f.mu.Unlock()
	return sub
}
