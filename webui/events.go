package webui

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// feed is one kind of live update on /api/events. Each client gets the
// snapshot on connect, again shortly after watch reports a change (bursts
// are coalesced), and every refresh interval.
type feed struct {
	// event is the SSE event name; the UI listens for it.
	event string
	// snapshot returns the current state as a JSON-encodable value. It is
	// called on the stream's goroutine.
	snapshot func() any
	// watch subscribes to changes: it calls changed (which does not block)
	// from any goroutine whenever the state may have changed, until stop is
	// called. stop waits until changed is no longer called.
	watch func(changed func()) (stop func())
	// coalesce is how long to wait after a change for more before sending;
	// zero means timing.coalesce.
	coalesce time.Duration
}

// feeds lists the live updates of the event stream. A service adds its feed
// here.
func (s *Server) feeds() []feed {
	return append([]feed{
		{
			event:    "peers",
			snapshot: func() any { return s.peerList() },
			watch: func(changed func()) func() {
				return forward(s.node.SubscribePeers())(changed)
			},
		},
		{
			event:    "directory",
			snapshot: func() any { return s.directoryList() },
			watch: func(changed func()) func() {
				return forward(s.node.SubscribeDirectory())(changed)
			},
			coalesce: s.timing.coalesceDirectory,
		},
	}, s.liveFeeds()...)
}

// relay is a live feed of discrete events rather than of states: each value
// is sent as an event of its own, in order, as soon as possible, with no
// snapshot on connect (the UI fetches the state when the stream opens).
type relay struct {
	// event is the SSE event name; the UI listens for it.
	event string
	// subscribe starts calling push (which does not block) from any
	// goroutine with every new value, until stop is called. stop waits
	// until push is no longer called.
	subscribe func(push func(any)) (stop func())
	// lost is sent once in place of values dropped because the client fell
	// behind by more than maxBacklog events; the UI then re-fetches.
	lost any
}

// relays lists the event relays of the event stream. A service adds its
// relays here.
func (s *Server) relays() []relay {
	return slices.Concat(s.chatRelays(), s.filesRelays(), s.musicRelays(), s.pluginsRelays(), s.subsonicRelays())
}

// maxBacklog is how many relayed events wait for one slow client before
// newer ones are dropped (and the relay's lost value sent instead).
const maxBacklog = 1024

// backlog holds the relayed events of one stream until it sends them. It
// is safe for concurrent use.
type backlog struct {
	mu    sync.Mutex
	queue []relayed
	lost  []bool // by relay index: values were dropped
}

// relayed is one value of relay number relay.
type relayed struct {
	relay int
	v     any
}

func newBacklog(relays int) *backlog {
	return &backlog{lost: make([]bool, relays)}
}

// push queues v for relay i; it drops v when the backlog is full.
func (b *backlog) push(i int, v any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) >= maxBacklog {
		b.lost[i] = true
		return
	}
	b.queue = append(b.queue, relayed{i, v})
}

// take returns the queued values and, after them, the lost value of every
// relay that dropped some, and empties the backlog.
func (b *backlog) take(relays []relay) []relayed {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.queue
	b.queue = nil
	for i, lost := range b.lost {
		if lost {
			out = append(out, relayed{i, relays[i].lost})
			b.lost[i] = false
		}
	}
	return out
}

// forward adapts a subscription (a channel of events and its cancel func)
// to feed.watch: every value received, and the channel closing, is only a
// hint that the state changed.
func forward[T any](ch <-chan T, cancel func()) func(changed func()) (stop func()) {
	return func(changed func()) func() {
		return each(ch, cancel)(func(T) { changed() })
	}
}

// each adapts a subscription (a channel of events and its cancel func) to
// a func that calls fn with every value received, on a goroutine of its
// own, until stop is called or the channel closes. stop waits for that
// goroutine, then cancels the subscription.
func each[T any](ch <-chan T, cancel func()) func(fn func(T)) (stop func()) {
	return func(fn func(T)) func() {
		quit, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-quit:
					return
				case v, ok := <-ch:
					if !ok {
						return
					}
					fn(v)
				}
			}
		}()
		var once sync.Once
		return func() {
			once.Do(func() {
				close(quit)
				<-done
				cancel()
			})
		}
	}
}

func (s *Server) eventRoutes() []route {
	return []route{
		{http.MethodGet, "/api/events", s.handleEvents},
	}
}

// handleEvents streams every feed as server-sent events until the client
// goes away or the server shuts down.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // ask proxies not to buffer the stream
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}

	feeds := s.feeds()
	dirty := make([]atomic.Bool, len(feeds))
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	for i, f := range feeds {
		stop := f.watch(func() {
			dirty[i].Store(true)
			signal()
		})
		defer stop()
	}
	relays := s.relays()
	queued := newBacklog(len(relays))
	for i, rl := range relays {
		stop := rl.subscribe(func(v any) {
			queued.push(i, v)
			signal()
		})
		defer stop()
	}

	st := &stream{
		w:       bufio.NewWriter(w),
		rc:      http.NewResponseController(w),
		timeout: s.timing.write,
	}
	defer st.rc.SetWriteDeadline(time.Time{}) // the connection may serve more requests
	s.log.Debug("event stream opened", "remote", r.RemoteAddr)
	err := s.stream(r.Context(), st, feeds, dirty, wake, relays, queued)
	s.log.Debug("event stream closed", "remote", r.RemoteAddr, "err", err)
}

func (s *Server) stream(ctx context.Context, st *stream, feeds []feed, dirty []atomic.Bool, wake <-chan struct{}, relays []relay, queued *backlog) error {
	t := s.timing
	fmt.Fprintf(st.w, "retry: %d\n\n", t.retry.Milliseconds())
	for _, f := range feeds {
		st.event(f.event, f.snapshot())
	}
	if err := st.flush(); err != nil {
		return err
	}

	refresh := time.NewTicker(t.refresh)
	defer refresh.Stop()
	keepAlive := time.NewTicker(t.keepAlive)
	defer keepAlive.Stop()

	// due[i] is when feed i's pending change is sent (zero: none pending);
	// one timer fires at the earliest.
	due := make([]time.Time, len(feeds))
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	defer coalesce.Stop()
	arm := func(now time.Time) {
		var next time.Time
		for _, d := range due {
			if !d.IsZero() && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
		if !next.IsZero() {
			coalesce.Reset(next.Sub(now))
		}
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			now := time.Now()
			for i, f := range feeds {
				if due[i].IsZero() && dirty[i].Load() {
					due[i] = now.Add(cmp.Or(f.coalesce, t.coalesce))
				}
			}
			arm(now)
			// Relayed events go out at once; state changes wait for the
			// coalescing timer.
			sent := queued.take(relays)
			if len(sent) == 0 {
				continue
			}
			for _, e := range sent {
				st.event(relays[e.relay].event, e.v)
			}
		case <-coalesce.C:
			now := time.Now()
			for i, f := range feeds {
				if due[i].IsZero() || due[i].After(now) {
					continue
				}
				due[i] = time.Time{}
				if dirty[i].Swap(false) {
					st.event(f.event, f.snapshot())
				}
			}
			arm(now)
		case <-refresh.C:
			for i, f := range feeds {
				dirty[i].Store(false)
				st.event(f.event, f.snapshot())
			}
		case <-keepAlive.C:
			st.w.WriteString(": keep-alive\n\n")
		}
		if err := st.flush(); err != nil {
			return err
		}
	}
}

// stream writes server-sent events to one client.
type stream struct {
	w       *bufio.Writer
	rc      *http.ResponseController
	timeout time.Duration
	err     error // first encoding error
}

// event buffers one event; flush sends it.
func (st *stream) event(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		if st.err == nil {
			st.err = fmt.Errorf("encode %s event: %w", name, err)
		}
		return
	}
	// json.Marshal never emits a newline, so data fits one "data:" line.
	fmt.Fprintf(st.w, "event: %s\ndata: %s\n\n", name, data)
}

// flush sends what is buffered, giving up on a client that does not take it
// within the write timeout.
func (st *stream) flush() error {
	if st.err != nil {
		return st.err
	}
	if err := st.rc.SetWriteDeadline(time.Now().Add(st.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if err := st.w.Flush(); err != nil {
		return err
	}
	return st.rc.Flush()
}
