package chatlog

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh"
)

// The chat service over the mesh:
//
//   - Live: every new message is broadcast on topic "chat/1" (one topic
//     for all channels; nodes not in a channel pass its messages on and
//     ignore them).
//   - Discovery: a node advertises the channels it has joined in its
//     directory record (resource "chat").
//   - History: two nodes that share a channel reconcile the messages in
//     the overlap of their storage ranges (protocol "chat/sync/2"), with
//     range-based set reconciliation, then send each other only what is
//     missing. Burn channels are never synced.

const (
	liveTopic = "chat/1"
	syncProto = "chat/sync/2"
	resource  = "chat"

	// maxBurnLive bounds the unread burn messages kept in memory per channel.
	maxBurnLive = 1000
	// maxSessions bounds the reconciliations this node answers at once
	// (one per peer and channel): each holds the items of a channel's window.
	maxSessions = 16
	// maxAdvertised bounds the channels advertised in the directory.
	maxAdvertised = 8
	// maxLimiters bounds the authors whose live rate is tracked.
	maxLimiters = 4096
	// maxPaceWait bounds how long Post waits for its turn (see pace).
	maxPaceWait = 10 * time.Second
)

// errRateLimited is returned by accept for a live message past its
// author's rate.
var errRateLimited = errors.New("chatlog: author over the live message rate")

// errSignedTooFast wraps errRateLimited for a live message past its
// author's rate whose author also signed the messages refused faster than
// that rate: a flood, not a burst of honest messages arriving at once.
var errSignedTooFast = fmt.Errorf("%w, and it signed them faster", errRateLimited)

// Mesh is what the chat service needs of the mesh node (*mesh.Node): its
// identity and the roles below, each declared beside the code that uses it
// (Broadcaster, Directory, Penalizer here; Requester and Neighbours in
// sync.go).
type Mesh interface {
	ID() mesh.ID
	Broadcaster
	Directory
	Requester
	Neighbours
	Penalizer
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	// Identity signs this node's messages; it must be the mesh node's.
	Identity *mesh.Identity
	// DefaultRange is the storage range of a newly joined channel.
	DefaultRange Range
	// SyncInterval is how often each joined channel is reconciled with a
	// random peer that holds it.
	SyncInterval time.Duration
	// SyncTimeout bounds each step of a sync (one request and its answer);
	// a whole sync takes as long as its history needs.
	SyncTimeout time.Duration
	// Quota bounds what each channel keeps of the messages this node did
	// not choose to keep, live or synced (see Quota). A zero field takes
	// the default; a negative one sets no limit on that axis.
	Quota Quota
	// AuthorRate (messages per second) and AuthorBurst (messages at once)
	// limit each author's live messages: past them, a live message is
	// dropped unstored, and scored against the neighbour that sent it if
	// that is the author itself (a relay cannot know the rate an author
	// keeps at this node) and the author signed the refused messages
	// faster than the rate too (a neighbour that catches up pulls a
	// minute of an author's messages at once), so a member cannot make every other member
	// fsync thousands of messages a second. History sync is not limited this way (a history comes in
	// bulk, thousands of messages by one author at once); the quota bounds
	// it. Zero takes the default; a negative AuthorRate sets no limit.
	AuthorRate  float64
	AuthorBurst int
	// PruneInterval is how often the day ranges are applied again, as
	// time moves their cutoff.
	PruneInterval time.Duration
	Logger        *slog.Logger
}

// DefaultServiceConfig returns the settings for a real node.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{
		DefaultRange: Range{Days: 30},
		SyncInterval: time.Minute,
		SyncTimeout:  30 * time.Second,
		// Room for a channel of 100,000 messages of 1 KiB.
		Quota: Quota{Bytes: 128 << 20, Count: 250_000},
		// A person types far slower; a script that posts may burst.
		AuthorRate:    5,
		AuthorBurst:   30,
		PruneInterval: 10 * time.Minute,
	}
}

// Service is a node's channel chat.
type Service struct {
	cfg   ServiceConfig
	mesh  Mesh
	store *Store
	log   *slog.Logger

	events pubsub.Topic[Event]
	// kick wakes Serve to start the background work queued in jobs.
	kick chan struct{}

	mu sync.Mutex
	// jobs is background work (history fetches, scrubs) that Serve starts
	// under its context and waits for; closed is set when Serve ends, and
	// work queued after it is dropped.
	jobs     []func(ctx context.Context)
	closed   bool
	burnLive map[ChannelID][]*Message // unread burn messages, oldest first
	sessions map[string]*responder
	syncing  map[syncKey]bool
	builds   syncBuilds // see buildAllowed in sync.go
	// lastStamp is the time, in ms, of the last message this node wrote
	// (see stamp); guarded by mu.
	lastStamp int64

	// limitMu guards limiters: the live rate of each author.
	limitMu  sync.Mutex
	limiters map[mesh.ID]*authorLimit
	// pacer keeps this node's own live messages to the rate that members
	// enforce (nil: no limit).
	pacer *rate.Limiter
}

type syncKey struct {
	ch   ChannelID
	peer mesh.ID
}

// NewService makes the chat service of a node and registers its protocols.
func NewService(cfg ServiceConfig, m Mesh, store *Store) (*Service, error) {
	if cfg.Identity == nil || cfg.Identity.ID != m.ID() {
		return nil, errors.New("chatlog: ServiceConfig.Identity must be the node's")
	}
	d := DefaultServiceConfig()
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = d.SyncInterval
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = d.SyncTimeout
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = d.PruneInterval
	}
	cfg.Quota.Bytes = orDefault(cfg.Quota.Bytes, d.Quota.Bytes)
	cfg.Quota.Count = orDefault(cfg.Quota.Count, d.Quota.Count)
	if cfg.AuthorRate == 0 {
		cfg.AuthorRate = d.AuthorRate
	}
	if cfg.AuthorBurst <= 0 {
		cfg.AuthorBurst = d.AuthorBurst
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg: cfg, mesh: m, store: store, log: cfg.Logger.With("service", "chat"),
		burnLive: make(map[ChannelID][]*Message),
		sessions: make(map[string]*responder),
		syncing:  make(map[syncKey]bool),
		limiters: make(map[mesh.ID]*authorLimit),
		kick:     make(chan struct{}, 1),
	}
	if cfg.AuthorRate > 0 {
		// Half the burst that others allow: room for the jitter of the
		// mesh, which can bunch messages sent apart.
		s.pacer = rate.NewLimiter(rate.Limit(cfg.AuthorRate), max(1, cfg.AuthorBurst/2))
	}
	store.SetQuota(cfg.Quota)
	m.ValidateBroadcast(liveTopic, s.validLive)
	m.HandleBroadcast(liveTopic, s.onLive)
	m.Handle(syncProto, mesh.HandlerFunc(s.handleSync))
	return s, s.advertise()
}

// orDefault is v, or def for 0, or 0 (no limit) for a negative v.
func orDefault[T int | int64](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Serve syncs channels with peers as they come and periodically, and
// applies the day ranges as time passes, until ctx ends.
func (s *Service) Serve(ctx context.Context) error {
	events, stop := s.mesh.SubscribePeers()
	defer stop()
	t := time.NewTicker(s.cfg.SyncInterval)
	defer t.Stop()
	prune := time.NewTicker(s.cfg.PruneInterval)
	defer prune.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() {
		s.mu.Lock()
		s.closed, s.jobs = true, nil
		s.mu.Unlock()
	}()
	// A scrub cut short by a crash or a stop is still due.
	s.scrubLater()
	for _, p := range s.mesh.Peers() {
		s.syncWithPeer(ctx, &wg, p.ID)
	}
	for {
		select {
		case e := <-events:
			if e.Kind == mesh.PeerUp {
				s.syncWithPeer(ctx, &wg, e.Peer.ID)
			}
		case <-s.kick:
			s.mu.Lock()
			jobs := s.jobs
			s.jobs = nil
			s.mu.Unlock()
			for _, f := range jobs {
				wg.Go(func() { f(ctx) })
			}
		case <-t.C:
			s.syncRound(ctx, &wg)
		case <-prune.C:
			if n, err := s.store.PruneAll(time.Now()); err != nil {
				s.log.Warn("prune", "err", err)
			} else if n > 0 {
				s.log.Debug("pruned", "messages", n)
			}
			s.scrubLater()
		case <-ctx.Done():
			return nil
		}
	}
}

// chatBuffer is how many chat events wait for a subscriber before newer
// ones are dropped for it.
const chatBuffer = 256

// SubscribeChat returns a subscription to the chat events. Events are
// dropped when the reader falls behind, and its Missed counts them: the
// reader then re-reads what it shows. Close it when done.
func (s *Service) SubscribeChat() *pubsub.Subscription[Event] {
	return s.events.Subscribe(chatBuffer)
}

func (s *Service) publish(e Event) { s.events.Publish(e) }

// Directory is the mesh directory: this node advertises its channels in
// its record (SetResource), and finds channels and who holds them in the
// records of the others.
type Directory interface {
	Directory() []mesh.Record
	Lookup(id mesh.ID) (mesh.Record, bool)
	SetResource(service string, summary any) error
}

// advert is one channel in this node's directory record.
type advert struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Owner string `json:"owner"`
	Nonce string `json:"nonce"`
	Burn  bool   `json:"burn,omitempty"`
	// Setting is the owner's newest signed setting, so that a joiner can
	// check the burn flag; base64 of the encoded message.
	Setting string `json:"setting,omitempty"`
}

// advertise puts the joined channels into the directory record.
func (s *Service) advertise() error {
	chs, err := s.store.Channels()
	if err != nil {
		return err
	}
	var ads []advert
	for _, c := range chs {
		if !c.Joined || len(ads) == maxAdvertised {
			continue
		}
		a := advert{ID: c.ID.String(), Name: c.Name, Owner: string(c.Owner), Nonce: base64.RawStdEncoding.EncodeToString(c.Nonce), Burn: c.Burn}
		if c.Burn {
			if m := s.newestSetting(c.ID); m != nil {
				a.Setting = base64.RawStdEncoding.EncodeToString(m.Encode())
			}
		}
		ads = append(ads, a)
	}
	return s.mesh.SetResource(resource, map[string]any{"channels": ads})
}

// newestSetting finds the owner's newest setting message of a channel.
func (s *Service) newestSetting(ch ChannelID) *Message {
	ms, err := s.store.List(ch, 0, 500)
	if err != nil {
		return nil
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Kind == KindSetting {
			return ms[i]
		}
	}
	return nil
}

// adverts reads the channels a directory record advertises.
func adverts(r mesh.Record) []advert {
	raw, ok := r.Resources[resource]
	if !ok {
		return nil
	}
	var v struct {
		Channels []advert `json:"channels"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	return v.Channels
}

// discover finds the channel id among the online nodes' adverts.
func (s *Service) discover(id ChannelID) (Channel, []mesh.ID, bool) {
	var found Channel
	ok := false
	var holders []mesh.ID
	for _, r := range s.mesh.Directory() {
		for _, a := range adverts(r) {
			if a.ID != id.String() {
				continue
			}
			if r.ID != s.mesh.ID() {
				holders = append(holders, r.ID)
			}
			if ok {
				continue
			}
			nonce, err := base64.RawStdEncoding.DecodeString(a.Nonce)
			if err != nil {
				continue
			}
			c := Channel{ID: id, Name: a.Name, Owner: mesh.ID(a.Owner), Nonce: nonce}
			if c.Verify() != nil {
				continue
			}
			if a.Setting != "" {
				if b, err := base64.RawStdEncoding.DecodeString(a.Setting); err == nil {
					if m, err := Decode(b); err == nil && m.Kind == KindSetting && m.Author == c.Owner && m.Channel == id {
						var st Settings
						if json.Unmarshal(m.Body, &st) == nil {
							c.Burn, c.SettingTime = st.Burn, m.Time
						}
					}
				}
			}
			found, ok = c, true
		}
	}
	return found, holders, ok
}

// Channels lists the channels this node has joined or knows, and the ones
// online nodes advertise.
func (s *Service) Channels(ctx context.Context) ([]ChannelInfo, error) {
	chs, err := s.store.Channels()
	if err != nil {
		return nil, err
	}
	members := map[string]int{}
	infos := map[string]ChannelInfo{}
	for _, r := range s.mesh.Directory() {
		for _, a := range adverts(r) {
			members[a.ID]++
			if _, ok := infos[a.ID]; !ok {
				infos[a.ID] = ChannelInfo{ID: a.ID, Name: a.Name, Owner: mesh.ID(a.Owner), Burn: a.Burn}
			}
		}
	}
	for _, c := range chs {
		infos[c.ID.String()] = info(c)
	}
	out := make([]ChannelInfo, 0, len(infos))
	for id, ci := range infos {
		ci.Members = members[id]
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b ChannelInfo) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// CreateChannel makes a channel owned by this node and joins it.
func (s *Service) CreateChannel(ctx context.Context, name string, burn bool) (ChannelInfo, error) {
	name = strings.TrimSpace(name)
	c := NewChannel(s.mesh.ID(), name)
	if err := c.Verify(); err != nil {
		return ChannelInfo{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	c.Joined, c.Range = true, s.cfg.DefaultRange
	if err := s.store.PutChannel(c); err != nil {
		return ChannelInfo{}, err
	}
	if burn {
		if err := s.setBurn(ctx, c.ID, true); err != nil {
			return ChannelInfo{}, err
		}
	}
	if err := s.advertise(); err != nil {
		return ChannelInfo{}, err
	}
	s.publish(Event{Type: "channel", Channel: c.ID.String()})
	c, _, _ = s.store.Channel(c.ID)
	return info(c), nil
}

func info(c Channel) ChannelInfo {
	return ChannelInfo{ID: c.ID.String(), Name: c.Name, Owner: c.Owner, Joined: c.Joined, Burn: c.Burn, Range: c.Range}
}

func (s *Service) channel(id string) (Channel, error) {
	cid, err := ParseChannelID(id)
	if err != nil {
		return Channel{}, fmt.Errorf("%w: %v", ErrUnknownChannel, err)
	}
	c, ok, err := s.store.Channel(cid)
	if err != nil {
		return Channel{}, err
	}
	if !ok {
		return Channel{}, ErrUnknownChannel
	}
	return c, nil
}

func (s *Service) joined(id string) (Channel, error) {
	c, err := s.channel(id)
	if err != nil {
		return c, err
	}
	if !c.Joined {
		return c, ErrNotJoined
	}
	return c, nil
}

// Join joins a channel that this node knows or an online node advertises,
// and fetches its history from the nodes that hold it.
func (s *Service) Join(ctx context.Context, id string) error {
	cid, err := ParseChannelID(id)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnknownChannel, err)
	}
	c, ok, err := s.store.Channel(cid)
	if err != nil {
		return err
	}
	found, holders, seen := s.discover(cid)
	if !ok {
		if !seen {
			return ErrUnknownChannel
		}
		c, c.Range = found, s.cfg.DefaultRange
	}
	if found.SettingTime > c.SettingTime {
		c.Burn, c.SettingTime = found.Burn, found.SettingTime
	}
	c.Joined = true
	// A channel that turned burn while this node was away loses its
	// history here; the scrub follows in the background.
	forgot, err := s.store.putChannel(c)
	if err != nil {
		return err
	}
	if forgot > 0 {
		s.scrubLater()
	}
	if err := s.advertise(); err != nil {
		return err
	}
	s.publish(Event{Type: "channel", Channel: id})
	if !c.Burn && len(holders) > 0 {
		s.background(func(ctx context.Context) { s.fetchHistory(ctx, cid, holders) })
	}
	return nil
}

// background has Serve run f on a goroutine that it waits for, with its
// context, so that the work of a request (a history fetch after Join)
// outlives the request but not the service. Work queued before Serve
// starts runs when it does; after Serve, background does nothing.
func (s *Service) background(f func(ctx context.Context)) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.jobs = append(s.jobs, f)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default: // Serve is already woken for the queue
	}
}

// Leave leaves a channel; its stored history stays until pruned.
func (s *Service) Leave(ctx context.Context, id string) error {
	c, err := s.channel(id)
	if err != nil {
		return err
	}
	c.Joined = false
	if err := s.store.PutChannel(c); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.burnLive, c.ID)
	s.mu.Unlock()
	s.publish(Event{Type: "channel", Channel: id})
	return s.advertise()
}

// Messages lists a channel's text messages, newest last.
func (s *Service) Messages(ctx context.Context, id string, before time.Time, limit int) ([]Entry, error) {
	c, err := s.channel(id)
	if err != nil {
		return nil, err
	}
	if c.Burn {
		s.mu.Lock()
		live := slices.Clone(s.burnLive[c.ID])
		s.mu.Unlock()
		out := make([]Entry, 0, len(live))
		for _, m := range live {
			out = append(out, entry(m, false, false, true))
		}
		return out, nil
	}
	var b int64
	if !before.IsZero() {
		b = before.UnixMilli()
	}
	out := []Entry{}
	// Page over stored messages until limit text messages are found.
	for len(out) < limit {
		ms, err := s.store.List(c.ID, b, limit)
		if err != nil {
			return nil, err
		}
		var page []Entry
		for _, m := range ms {
			if !m.Kind.text() {
				continue
			}
			retracted, _ := s.store.Retracted(m.ID)
			marked, _ := s.store.Marked(m.ID)
			page = append(page, entry(m, retracted, marked, false))
		}
		out = append(page, out...)
		if len(ms) < limit {
			break
		}
		b = ms[0].Time
		if len(ms) > 0 && ms[0].Time == ms[len(ms)-1].Time {
			break // a page of one instant: stop rather than loop
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// entry is m as a channel shows it, with its state at this node.
func entry(m *Message, retracted, marked, burn bool) Entry {
	v := Entry{
		ID: m.ID.String(), Channel: m.Channel.String(), Author: m.Author,
		Time: m.When(), Retracted: retracted, Marked: marked, Burn: burn,
	}
	if m.Kind == KindGuest {
		g, _ := m.Guest() // stored messages have passed Check
		v.Guest = g.Guest
		if !retracted {
			v.Text = g.Text
		}
		return v
	}
	if !retracted {
		v.Text = string(m.Body)
	}
	return v
}

// Post writes a text message to a joined channel. For a normal channel it
// returns once the message is durably stored; for a burn channel it is
// only sent live. It waits, if need be, to keep to the live rate that
// members enforce on every author (ServiceConfig.AuthorRate), so that a
// script that posts fast is slowed down here rather than dropped and
// scored down by the others; past maxPaceWait it fails with
// ErrInvalidInput instead.
func (s *Service) Post(ctx context.Context, id, text string) (Entry, error) {
	return s.post(ctx, id, "", text)
}

// PostGuest is Post for a guest named guest (see KindGuest): the message
// is this node's, marked as a guest's. Whether guests may post is the
// caller's policy.
func (s *Service) PostGuest(ctx context.Context, id, guest, text string) (Entry, error) {
	if err := CheckGuestName(guest); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return s.post(ctx, id, guest, text)
}

func (s *Service) post(ctx context.Context, id, guest, text string) (Entry, error) {
	c, err := s.joined(id)
	if err != nil {
		return Entry{}, err
	}
	if strings.TrimSpace(text) == "" || len(text) > MaxBody || !utf8.ValidString(text) {
		return Entry{}, fmt.Errorf("%w: text must be 1..%d bytes of UTF-8", ErrInvalidInput, MaxBody)
	}
	kind, body := KindText, []byte(text)
	if guest != "" {
		kind = KindGuest
		if body, err = json.Marshal(GuestBody{Guest: guest, Text: text}); err != nil {
			return Entry{}, err
		}
		if len(body) > MaxBody {
			return Entry{}, fmt.Errorf("%w: text must be 1..%d bytes of UTF-8", ErrInvalidInput, MaxBody-MaxGuestName-32)
		}
	}
	if err := s.pace(ctx); err != nil {
		return Entry{}, err
	}
	m, err := NewMessage(s.cfg.Identity, c.ID, kind, body, ID{}, s.stamp())
	if err != nil {
		return Entry{}, err
	}
	if c.Burn {
		s.keepBurn(m)
	} else if _, err := s.store.Put(ctx, m); err != nil {
		return Entry{}, err
	}
	s.send(ctx, m)
	v := entry(m, false, false, c.Burn)
	s.publish(Event{Type: "message", Channel: id, Message: &v})
	return v, nil
}

// stamp returns the time of a message this node writes: now, or one
// millisecond after the last one it stamped when the clock has not moved
// on (or went back), so that this node's own messages keep the order they
// were written in: messages order by time, then by id.
func (s *Service) stamp() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UnixMilli()
	if now <= s.lastStamp {
		now = s.lastStamp + 1
	}
	s.lastStamp = now
	return time.UnixMilli(now)
}

// pace waits until this node may send another live message (see Post),
// for at most maxPaceWait: a script that sends far faster than the rate
// gets an error to back off on, rather than requests that queue for
// minutes.
func (s *Service) pace(ctx context.Context) error {
	if s.pacer == nil {
		return nil
	}
	r := s.pacer.Reserve()
	d := r.Delay()
	if d == 0 {
		return nil
	}
	if d > maxPaceWait {
		r.Cancel()
		return fmt.Errorf("%w: sending faster than the %g messages a second that members accept; try again in %v",
			ErrInvalidInput, s.cfg.AuthorRate, d.Round(time.Second))
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return fmt.Errorf("chatlog: waiting to send: %w", ctx.Err())
	}
}

// Broadcaster carries the live messages: every node checks each one
// before it passes it on (ValidateBroadcast), members take it
// (HandleBroadcast), and a retraction stops the message it retracts
// (ForgetBroadcast).
type Broadcaster interface {
	HandleBroadcast(topic string, h mesh.BroadcastHandler)
	ValidateBroadcast(topic string, check func(mesh.BroadcastMsg) error)
	BroadcastID(ctx context.Context, topic string, id mesh.MsgID, payload []byte) error
	ForgetBroadcast(id mesh.MsgID, match func(payload []byte) bool) bool
}

// broadcastID is the broadcast id of a chat message: the start of its id,
// so that a retraction can name the broadcast to forget.
func broadcastID(id ID) mesh.MsgID { return mesh.MsgID(id[:16]) }

// send broadcasts a message live.
func (s *Service) send(ctx context.Context, m *Message) {
	if m.Kind == KindRetract {
		s.mesh.ForgetBroadcast(broadcastID(m.Ref), retracts(m))
	}
	if err := s.mesh.BroadcastID(ctx, liveTopic, broadcastID(m.ID), m.Encode()); err != nil {
		s.log.Warn("broadcast message", "err", err)
	}
}

func (s *Service) keepBurn(m *Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.burnLive[m.Channel]
	for _, o := range live {
		if o.ID == m.ID {
			return
		}
	}
	if len(live) >= maxBurnLive {
		live = live[1:]
	}
	s.burnLive[m.Channel] = append(live, m)
}

// Read forgets a burn message once the user has seen it.
func (s *Service) Read(ctx context.Context, id, msgID string) error {
	c, err := s.channel(id)
	if err != nil {
		return err
	}
	mid, err := ParseID(msgID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnknownMessage, err)
	}
	if !c.Burn {
		return nil // only burn messages vanish when read
	}
	s.mu.Lock()
	live := s.burnLive[c.ID]
	i := slices.IndexFunc(live, func(m *Message) bool { return m.ID == mid })
	if i >= 0 {
		s.burnLive[c.ID] = slices.Delete(live, i, i+1)
	}
	s.mu.Unlock()
	if i < 0 {
		return ErrUnknownMessage
	}
	s.publish(Event{Type: "burned", Channel: id, ID: msgID})
	return nil
}

// Retract withdraws one of this node's messages everywhere.
func (s *Service) Retract(ctx context.Context, id, msgID string) error {
	c, err := s.joined(id)
	if err != nil {
		return err
	}
	orig, err := s.stored(c, msgID)
	if err != nil {
		return err
	}
	mid := orig.ID
	if orig.Author != s.mesh.ID() {
		return ErrNotAuthor
	}
	if err := s.pace(ctx); err != nil {
		return err
	}
	m, err := NewMessage(s.cfg.Identity, c.ID, KindRetract, nil, mid, s.stamp())
	if err != nil {
		return err
	}
	if _, err := s.store.Put(ctx, m); err != nil {
		return err
	}
	s.send(ctx, m)
	s.publish(Event{Type: "retract", Channel: id, ID: msgID})
	return nil
}

// Mark keeps (on) or releases a message regardless of the storage range.
func (s *Service) Mark(ctx context.Context, id, msgID string, on bool) error {
	c, err := s.channel(id)
	if err != nil {
		return err
	}
	m, err := s.stored(c, msgID)
	if err != nil {
		return err
	}
	return s.store.SetMark(m.ID, on)
}

// stored finds a stored message of channel c by its hex id.
func (s *Service) stored(c Channel, msgID string) (*Message, error) {
	mid, err := ParseID(msgID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnknownMessage, err)
	}
	m, ok, err := s.store.Get(mid)
	if err != nil {
		return nil, err
	}
	if !ok || m.Channel != c.ID {
		return nil, ErrUnknownMessage
	}
	return m, nil
}

// SetSettings changes this device's storage range and, for the owner, the
// channel's burn setting. Nil leaves a setting as it is.
func (s *Service) SetSettings(ctx context.Context, id string, r *Range, burn *bool) error {
	c, err := s.channel(id)
	if err != nil {
		return err
	}
	if r != nil {
		if r.Days < 0 || r.Count < 0 {
			return fmt.Errorf("%w: range of %d days and %d messages: neither may be negative (0 keeps any age or number)", ErrInvalidInput, r.Days, r.Count)
		}
		c.Range = *r
		// PutChannel applies the new range at once.
		if err := s.store.PutChannel(c); err != nil {
			return err
		}
	}
	if burn != nil && *burn != c.Burn {
		if c.Owner != s.mesh.ID() {
			return ErrNotOwner
		}
		if err := s.setBurn(ctx, c.ID, *burn); err != nil {
			return err
		}
		if err := s.advertise(); err != nil {
			return err
		}
	}
	s.publish(Event{Type: "channel", Channel: id})
	return nil
}

// setBurn signs and sends the owner's burn setting.
func (s *Service) setBurn(ctx context.Context, ch ChannelID, on bool) error {
	if err := s.pace(ctx); err != nil {
		return err
	}
	body, _ := json.Marshal(Settings{Burn: on})
	m, err := NewMessage(s.cfg.Identity, ch, KindSetting, body, ID{}, s.stamp())
	if err != nil {
		return err
	}
	if err := s.applySetting(ctx, m); err != nil {
		return err
	}
	s.send(ctx, m)
	return nil
}

// applySetting takes an owner's verified setting message.
func (s *Service) applySetting(ctx context.Context, m *Message) error {
	var st Settings
	if err := json.Unmarshal(m.Body, &st); err != nil {
		return err
	}
	c, ok, err := s.store.Channel(m.Channel)
	if err != nil || !ok {
		return err
	}
	if m.Time <= c.SettingTime {
		return nil // an older setting
	}
	if !c.Burn {
		// Keep the setting in the history while the channel still stores.
		if _, err := s.store.Put(ctx, m); err != nil && !errors.Is(err, ErrBurn) {
			return err
		}
	}
	c.Burn, c.SettingTime = st.Burn, m.Time
	// With burn on, this deletes the stored history; the scrub of its
	// bytes from the file follows in the background, as it writes as much
	// as the file has free and this runs as messages come in.
	forgot, err := s.store.putChannel(c)
	if err != nil {
		return err
	}
	if forgot > 0 {
		s.scrubLater()
	}
	s.publish(Event{Type: "channel", Channel: c.ID.String()})
	return nil
}

// scrubLater scrubs deleted messages from the database file in the
// background, if a scrub is due (see Store.Scrub). One that cannot finish
// is tried again at the next prune.
func (s *Service) scrubLater() {
	s.background(func(ctx context.Context) {
		if err := s.store.Scrub(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("burn: deleted messages not yet scrubbed from the file", "err", err)
		}
	})
}

// verdict is what to do with a message from a peer that passed judge.
type verdict int

const (
	skip     verdict = iota // not for this node: channel not joined, outside the range, a synced burn message
	store                   // a text or retraction to store
	setting                 // an owner's setting to apply
	showBurn                // a live message of a burn channel: keep it in memory until read
)

// judge holds the rules that every message from a peer passes, live or
// synced, so they are written once. c is m's channel as stored (known
// false: none), lower returns the bound of its storage range, and live
// says that m came by broadcast, not sync. An error is the reason the
// sender is to be scored down for m (a sync skips, rather than fails on,
// the errors notTheSenders names).
func (s *Service) judge(c Channel, known bool, m *Message, lower func() int64, live bool) (verdict, error) {
	if err := m.Check(time.Now()); err != nil {
		return skip, err
	}
	if !known || !c.Joined {
		return skip, nil
	}
	if live {
		if ok, signedFast := s.allowLive(m.Author, m.Time); signedFast {
			return skip, fmt.Errorf("%w: %s", errSignedTooFast, m.Author.Short())
		} else if !ok {
			return skip, fmt.Errorf("%w: %s", errRateLimited, m.Author.Short())
		}
	}
	switch m.Kind {
	case KindSetting:
		if m.Author != c.Owner {
			return skip, ErrNotOwner
		}
		return setting, nil
	case KindRetract:
		if orig, ok, _ := s.store.Get(m.Ref); ok && orig.Author != m.Author {
			return skip, ErrNotAuthor
		}
		if c.Burn {
			return skip, nil
		}
		return store, nil
	}
	switch {
	case c.Burn && live:
		return showBurn, nil
	case c.Burn, m.Time < lower():
		return skip, nil
	}
	return store, nil
}

// announce publishes the event of a message that has just been stored (or
// kept, for a burn channel).
func (s *Service) announce(m *Message, burn bool) {
	if m.Kind == KindRetract {
		s.publish(Event{Type: "retract", Channel: m.Channel.String(), ID: m.Ref.String()})
		return
	}
	retracted := false
	if !burn {
		retracted, _ = s.store.Retracted(m.ID)
	}
	v := entry(m, retracted, false, burn)
	s.publish(Event{Type: "message", Channel: m.Channel.String(), Message: &v})
}

// accept checks a message from a peer and stores or shows it. It returns
// an error, with the reason, for a message the sender is to be scored down
// for; a message for a channel this node is not in is ignored.
func (s *Service) accept(ctx context.Context, m *Message, live bool) error {
	c, known, err := s.store.Channel(m.Channel)
	if err != nil {
		known = false // not stored where this node can read it: ignored
	}
	lower := func() int64 {
		l, err := s.store.Lower(c.ID, c.Range, time.Now())
		if err != nil {
			return math.MinInt64 // no bound known: keep it
		}
		return l
	}
	v, err := s.judge(c, known, m, lower, live)
	if err != nil {
		return err
	}
	switch v {
	case setting:
		return s.applySetting(ctx, m)
	case showBurn:
		s.keepBurn(m)
		s.announce(m, true)
	case store:
		added, err := s.store.Put(ctx, m)
		if err != nil {
			return err
		}
		if added > 0 {
			s.announce(m, false)
		}
	}
	return nil
}

// acceptMany takes messages from a sync: each is judged as accept does,
// and the text and retract messages are stored in one commit, so a
// history costs one fsync, not one per message. An error is the sender's
// fault unless it wraps errLocal (this node's store failed).
func (s *Service) acceptMany(ctx context.Context, ch ChannelID, ms []*Message) error {
	c, ok, err := s.store.Channel(ch)
	if err != nil || !ok || !c.Joined || c.Burn {
		return local(err)
	}
	lower, err := s.store.Lower(ch, c.Range, time.Now())
	if err != nil {
		return local(err)
	}
	var batch, fresh []*Message
	for _, m := range ms {
		if m.Channel != ch {
			return fmt.Errorf("%w: message for another channel", ErrInvalidInput)
		}
		v, err := s.judge(c, true, m, func() int64 { return lower }, false)
		switch {
		case errors.Is(err, ErrNotAuthor):
			// A retract by someone else than the author of a message
			// this node holds: the peer may not hold the message, so
			// it could not tell. Stored without effect, as Put does,
			// so that the two sets agree.
			batch = append(batch, m)
			continue
		case notTheSenders(err):
			continue // skipped, but the sync goes on
		case err != nil:
			return err
		}
		switch v {
		case setting:
			// The owner signed it: whatever fails here is not the
			// sender's doing.
			if err := s.applySetting(ctx, m); err != nil {
				return local(err)
			}
			// The setting may have turned burn on: the channel stores
			// nothing from now, neither the rest of the batch nor what
			// it brought before the setting.
			if c, ok, err = s.store.Channel(ch); err != nil || !ok || c.Burn {
				return local(err)
			}
		case store:
			if has, _ := s.store.Has(m.ID); !has {
				fresh = append(fresh, m)
			}
			batch = append(batch, m)
		}
	}
	if len(batch) == 0 {
		return nil
	}
	if _, err := s.store.Put(ctx, batch...); err != nil {
		return local(err)
	}
	for _, m := range fresh {
		if kept, _ := s.store.Has(m.ID); kept { // else outside the range or the quota
			s.announce(m, false)
		}
	}
	return nil
}

// notTheSenders reports whether err, for a message that a peer passes on
// by sync, is no fault of that peer: a message stamped ahead of this
// node's clock (it may be valid later, and the peer's clock may be ahead),
// or of a kind that a newer version knows. Scoring the peer down for it
// would ban honest peers; the sync skips the message instead.
func notTheSenders(err error) bool {
	return errors.Is(err, ErrFuture) || errors.Is(err, ErrUnknownKind)
}

// authorLimit is the live rate limit of one author.
type authorLimit struct {
	// arrival takes the live messages as they come.
	arrival *rate.Limiter
	// refused holds the stamps (ms) of the last messages arrival
	// refused, up to twice the burst, oldest first.
	refused []int64
}

// allowLive takes one live message of author, stamped at (ms), from its
// rate limit, and reports whether there was room for it. When there was
// not, signedFast reports whether the author signed the last refused
// messages faster than the rate as well: twice the burst of them within
// the time the rate takes to refill one burst. Only that is a flood. A
// neighbour that catches up pulls the messages of the last minute at once
// and in any order (see mesh.Config.MessageCacheAge): they arrive far
// faster than the rate, but their author, pacing its posts to half the
// burst (see pace), signed any twice the burst of them over at least one
// and a half times that.
func (s *Service) allowLive(author mesh.ID, at int64) (ok, signedFast bool) {
	if s.cfg.AuthorRate < 0 {
		return true, false
	}
	now := time.Now()
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	l := s.limiters[author]
	if l == nil {
		if len(s.limiters) >= maxLimiters {
			s.dropLimiters(now)
		}
		l = &authorLimit{arrival: rate.NewLimiter(rate.Limit(s.cfg.AuthorRate), s.cfg.AuthorBurst)}
		s.limiters[author] = l
	}
	if l.arrival.AllowN(now, 1) {
		return true, false
	}
	keep := 2 * s.cfg.AuthorBurst
	if len(l.refused) >= keep {
		l.refused = append(l.refused[:0], l.refused[len(l.refused)-keep+1:]...)
	}
	l.refused = append(l.refused, at)
	if len(l.refused) < keep {
		return false, false
	}
	span := slices.Max(l.refused) - slices.Min(l.refused)
	return false, float64(span) < 1000*float64(s.cfg.AuthorBurst)/s.cfg.AuthorRate
}

// dropLimiters makes room in the full limiter map: first the limiters that
// have refilled (a new one is the same), then, if every author is active
// (many keys flooding at once), any half of them.
func (s *Service) dropLimiters(now time.Time) {
	for id, l := range s.limiters {
		if l.arrival.TokensAt(now) >= float64(s.cfg.AuthorBurst) {
			delete(s.limiters, id)
		}
	}
	for id := range s.limiters {
		if len(s.limiters) < maxLimiters/2 {
			break
		}
		delete(s.limiters, id)
	}
}

// validLive is the check every node runs on a live chat message before it
// passes it on: signature, form, size, kind, time, and that the broadcast
// id is the message's. A message stamped too far ahead fails with ErrFuture,
// which wraps mesh.ErrNotYetValid: this node's clock may be the one that
// is wrong, so the neighbour that relayed it is not scored down. So does a
// message of a kind this version does not know: a newer node passes it on
// in good faith, and penalties ban.
//
// A valid retraction also makes the node forget the retracted message's
// broadcast if it holds it and the retraction is by its author, so no node
// passes it on any more, channel member or not. A retraction that comes
// first forgets nothing: the message is still delivered and relayed, and
// members' stores, which keep the retraction, show it retracted.
func (s *Service) validLive(b mesh.BroadcastMsg) error {
	m, err := Decode(b.Payload)
	if err != nil {
		return err
	}
	if err := m.Check(time.Now()); errors.Is(err, ErrUnknownKind) {
		return fmt.Errorf("%w (%w)", err, mesh.ErrNotYetValid)
	} else if err != nil {
		return err
	}
	if b.ID != broadcastID(m.ID) {
		return fmt.Errorf("%w: broadcast id is not the message's", ErrInvalidInput)
	}
	if m.Kind == KindRetract {
		s.mesh.ForgetBroadcast(broadcastID(m.Ref), retracts(m))
	}
	return nil
}

// retracts returns a match for ForgetBroadcast that approves the payload
// of the message that retraction r names, by r's author: anyone can sign
// a retraction of someone else's message, and it must not stop that
// message from travelling.
func retracts(r *Message) func(payload []byte) bool {
	return func(payload []byte) bool {
		// The payload passed validLive when it was taken: parse it, do not
		// verify its signature again.
		m, err := decode(payload, false)
		return err == nil && m.ID == r.Ref && m.Author == r.Author
	}
}

// onLive takes a message broadcast live.
func (s *Service) onLive(b mesh.BroadcastMsg) {
	// validLive has verified these very bytes.
	m, err := decode(b.Payload, false)
	if err == nil {
		err = s.accept(context.Background(), m, true)
	}
	if err == nil {
		return
	}
	// validLive has checked all that a relay can check. What accept refuses
	// beyond that needs this node's state: who may retract or change
	// settings, an author's live rate, this node's clock (it moved since
	// validLive) and its store (a full disk). Penalties ban, so score down
	// only an author that sent its own message and broke a rule of its own
	// (for the rate: signed its messages too fast, see allowLive).
	if m != nil && m.Author == b.From && (errors.Is(err, ErrNotAuthor) || errors.Is(err, ErrNotOwner) || errors.Is(err, errSignedTooFast)) {
		s.reject(b.From, err)
		return
	}
	if errors.Is(err, ErrNotAuthor) || errors.Is(err, ErrNotOwner) || errors.Is(err, errRateLimited) || errors.Is(err, mesh.ErrNotYetValid) {
		s.log.Debug("chat message rejected", "via", b.From.Short(), "reason", err)
		return
	}
	s.log.Warn("live chat message not taken", "via", b.From.Short(), "err", err)
}

// Penalizer scores down a neighbour that sent what no honest node sends.
type Penalizer interface {
	Penalize(id mesh.ID, reason string)
}

func (s *Service) reject(from mesh.ID, err error) {
	s.log.Info("chat message rejected", "from", from.Short(), "reason", err)
	s.mesh.Penalize(from, "chat: "+err.Error())
}
