package chatlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

// answerMesh is a Mesh whose peer answers every request with answer; it
// records penalties. Only Request and Penalize are used by get.
type answerMesh struct {
	Mesh
	answer    []byte
	penalties []string
}

func (m *answerMesh) Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error) {
	return m.answer, nil
}

func (m *answerMesh) Penalize(id mesh.ID, reason string) { m.penalties = append(m.penalties, reason) }

// TestGetAnswerChecked: a get answer from a hostile holder is refused with
// ErrInvalidInput and a penalty, whatever it lies about, and an honest
// answer that serves part of what it went through is taken.
func TestGetAnswerChecked(t *testing.T) {
	ident := newIdent(t)
	var ms []*Message
	var ids []ID
	for i := range 4 {
		m := msgAt(t, ident, testChannel, KindText, fmt.Sprint("m", i), ID{}, int64(1000+i))
		ms = append(ms, m)
		ids = append(ids, m.ID)
	}
	answer := func(consumed int, msgs ...*Message) []byte {
		b := binary.AppendUvarint(nil, uint64(consumed))
		for _, m := range msgs {
			b, _ = appendEntry(b, maxSyncFrame, m.Encode())
		}
		return b
	}
	badSig := ms[1].Encode()
	badSig[len(badSig)-1] ^= 1
	asked := ids[:3] // ms[3] is never asked for
	cases := []struct {
		name    string
		answer  []byte
		served  int
		missing []ID
	}{
		{"honest, part served", answer(3, ms[0], ms[2]), 2, []ID{ids[1]}},
		{"stopped short with room left", answer(1, ms[0]), -1, nil},
		{"honest, none held", answer(3), 0, asked},
		{"not asked for", answer(3, ms[0], ms[3]), -1, nil},
		{"beyond what it went through", answer(1, ms[0], ms[1]), -1, nil},
		{"out of order", answer(3, ms[2], ms[0]), -1, nil},
		{"twice", answer(3, ms[0], ms[0]), -1, nil},
		{"went through nothing", answer(0), -1, nil},
		{"went through more than asked", answer(4, ms[0]), -1, nil},
		{"bad signature", nil, -1, nil}, // built below
		{"truncated", answer(3, ms[0])[:50], -1, nil},
	}
	// The bad-signature answer, built by hand.
	cases[9].answer, _ = appendEntry(binary.AppendUvarint(nil, 3), maxSyncFrame, badSig)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			am := &answerMesh{answer: c.answer}
			s := &Service{cfg: DefaultServiceConfig(), mesh: am, log: slog.New(slog.DiscardHandler)}
			a := s.get(context.Background(), source{peer: "peer"}, slices.Clone(asked))
			if c.served < 0 {
				if !errors.Is(a.err, ErrInvalidInput) && !errors.Is(a.err, ErrBadMessage) {
					t.Fatalf("got %v, want ErrInvalidInput or ErrBadMessage", a.err)
				}
				if len(am.penalties) == 0 {
					t.Fatal("the holder was not scored down")
				}
				return
			}
			if a.err != nil || len(am.penalties) > 0 {
				t.Fatalf("honest answer: %v, penalties %q", a.err, am.penalties)
			}
			if len(a.msgs) != c.served || !slices.Equal(a.missing, c.missing) {
				t.Fatalf("served %d, missing %d; want %d, %d", len(a.msgs), len(a.missing), c.served, len(c.missing))
			}
		})
	}
}

// TestGetAnswerCutBySize: a holder's answer to a get of more messages
// than a frame holds goes through as many as fit and is taken whole; the
// rest is asked again.
func TestGetAnswerCutBySize(t *testing.T) {
	store := newStore(t)
	ident := newIdent(t)
	body := string(make([]byte, MaxBody))
	var ids []ID
	for i := range 20 {
		m := msgAt(t, ident, testChannel, KindText, body, ID{}, int64(1000+i))
		mustPut(t, store, m)
		ids = append(ids, m.ID)
	}
	ans, err := store.getAnswer(testChannel, 0, ids)
	if err != nil {
		t.Fatal(err)
	}
	am := &answerMesh{answer: ans}
	s := &Service{cfg: DefaultServiceConfig(), mesh: am, log: slog.New(slog.DiscardHandler)}
	a := s.get(context.Background(), source{peer: "peer"}, ids)
	if a.err != nil || len(am.penalties) > 0 {
		t.Fatalf("honest answer: %v, penalties %q", a.err, am.penalties)
	}
	if a.consumed == len(ids) || a.consumed != len(a.msgs) || len(a.missing) != 0 || len(ans) > maxSyncFrame {
		t.Fatalf("answer of %d bytes went through %d of %d ids, served %d, missing %d", len(ans), a.consumed, len(ids), len(a.msgs), len(a.missing))
	}
}

// TestSyncFrameLimits: every sync frame fits a bulk frame by construction,
// with the largest messages there can be: a get of maxGetIDs, a recon
// request with the largest recon message, and get answers and puts packed
// from messages of MaxBody bodies, whatever is already in the frame.
func TestSyncFrameLimits(t *testing.T) {
	if n := len(getRequest(sessionID{}, make([]ID, maxGetIDs))); n > maxSyncFrame {
		t.Fatalf("a get of %d ids takes %d bytes, over %d", maxGetIDs, n, maxSyncFrame)
	}
	if syncHeader+maxReconMessage != maxSyncFrame {
		t.Fatalf("recon request of %d bytes, frame %d", syncHeader+maxReconMessage, maxSyncFrame)
	}
	s := newStore(t)
	ident := newIdent(t)
	var ids []ID
	body := make([]byte, MaxBody)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var ms []*Message
	for i := range 40 {
		m := msgAt(t, ident, testChannel, KindText, string(body[:MaxBody-i]), ID{}, int64(1000+i))
		ms = append(ms, m)
		ids = append(ids, m.ID)
	}
	if _, err := s.Put(context.Background(), ms...); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []int{0, syncHeader, 1000, maxSyncFrame - MaxEncoded - 3} {
		rest := ids
		for len(rest) > 0 {
			b, n, err := s.appendEncoded(make([]byte, prefix), maxSyncFrame, testChannel, 0, rest)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > maxSyncFrame || n == 0 || len(b) == prefix {
				t.Fatalf("prefix %d: frame of %d bytes went through %d ids", prefix, len(b), n)
			}
			entries, err := decodeEntries(b[prefix:])
			if err != nil || len(entries) > n {
				t.Fatalf("prefix %d: %d entries for %d ids: %v", prefix, len(entries), n, err)
			}
			rest = rest[n:]
		}
	}
}

// TestFetchCalledOffNoPenalty: a batch that cannot be stored because the
// sync was called off (this node stops, or the first source failed while
// a helper's batch was being stored) does not score the holder down.
func TestFetchCalledOffNoPenalty(t *testing.T) {
	ident := newIdent(t)
	c := NewChannel(ident.ID, "archive")
	c.Joined = true
	store := newStore(t)
	if err := store.PutChannel(c); err != nil {
		t.Fatal(err)
	}
	m := msgAt(t, ident, c.ID, KindText, "hello", ID{}, time.Now().UnixMilli())
	ans, _ := appendEntry(binary.AppendUvarint(nil, 1), maxSyncFrame, m.Encode())
	am := &answerMesh{answer: ans}
	s := &Service{cfg: DefaultServiceConfig(), mesh: am, store: store, log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q := newFetchQueue([]ID{m.ID})
	var st syncStats
	if err := s.fetchFrom(ctx, c.ID, q, source{peer: "peer"}, false, nil, &st); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if len(am.penalties) > 0 {
		t.Fatalf("the holder was scored down: %q", am.penalties)
	}
}
