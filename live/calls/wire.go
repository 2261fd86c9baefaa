package calls

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/pion/sdp/v3"

	"github.com/catnest/catnest/mesh"
)

// Protocol is the mesh protocol of call messages between nodes.
// Version 2 numbers every message (request.Seq).
const Protocol = "call/2"

// Limits of what pages and peers may send.
const (
	// MaxRoomName bounds a room name, in characters.
	MaxRoomName = 64
	// MaxSDP bounds the SDP of an offer or answer, in bytes; browsers'
	// audio and video offers take a few kilobytes.
	MaxSDP = 32 << 10
	// maxCandidate bounds an ICE candidate line and its mid and ufrag.
	maxCandidate = 1 << 10
	// maxSession bounds a session id.
	maxSession = 64
	// maxSkip bounds the unreachable nodes a join may list.
	maxSkip = 8
	// MaxMessage bounds a call message between nodes: an SDP with room
	// for JSON escapes, and the other fields.
	MaxMessage = 2*MaxSDP + 4<<10
)

// Operations of a call message.
const (
	opJoin   = "join"   // to the owner: seat this session
	opLeave  = "leave"  // to the owner: free this session's seat
	opState  = "state"  // from the owner: the room changed for this session
	opSignal = "signal" // to the other member's node: pass this to that session
	opCheck  = "check"  // from the owner: does this session still hold its seat here?
)

// Member is one seat of a room: a session on a node.
type Member struct {
	Node    mesh.ID `json:"node"`
	Session string  `json:"session"`
}

// request is a call message between nodes.
type request struct {
	Op string `json:"op"`
	// Seq numbers the message among its sender's to this destination,
	// the same in every copy of it (dedup.go).
	Seq     uint64 `json:"seq"`
	Room    string `json:"room"`
	Session string `json:"session"`
	// Refresh marks a join from a session that holds a seat already (at
	// this owner or at the one before).
	Refresh bool `json:"refresh,omitempty"`
	// Skip lists the nodes that rank above the asked one for the room but
	// that the joiner could not reach.
	Skip []mesh.ID `json:"skip,omitempty"`
	// State, Epoch, Peer and Initiator are the room's state for Session,
	// in a state notice.
	State     string  `json:"state,omitempty"`
	Epoch     uint64  `json:"epoch,omitempty"`
	Peer      *Member `json:"peer,omitempty"`
	Initiator bool    `json:"initiator,omitempty"`
	// From is the sending session of a signal, which goes to Session.
	From   string  `json:"from,omitempty"`
	Signal *Signal `json:"signal,omitempty"`
}

// reply is the owner's answer to a join: the room's state for the joiner.
type reply struct {
	// State is stateJoined, stateFull or stateRedirect.
	State string `json:"state"`
	// Owner is the node to ask instead, for stateRedirect.
	Owner     mesh.ID `json:"owner,omitempty"`
	Epoch     uint64  `json:"epoch,omitempty"`
	Peer      *Member `json:"peer,omitempty"`
	Initiator bool    `json:"initiator,omitempty"`
}

const (
	stateJoined   = "joined"
	stateFull     = "full"
	stateRedirect = "redirect"
)

// Signal is a WebRTC offer, answer or ICE candidate from one page to the
// other.
type Signal struct {
	// Type is "offer", "answer" or "candidate".
	Type string `json:"type"`
	// SDP is the session description of an offer or answer.
	SDP string `json:"sdp,omitempty"`
	// Candidate is the ICE candidate, as RTCIceCandidate.toJSON gives it;
	// a candidate with an empty line ends the candidates.
	Candidate *Candidate `json:"candidate,omitempty"`
}

// Candidate is an RTCIceCandidateInit.
type Candidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// CheckRoom returns an error wrapping ErrBadRoom unless name is a room
// name: 1 to MaxRoomName letters, digits, '-', '_' or '.', starting with a
// letter or digit.
func CheckRoom(name string) error {
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxRoomName {
		return fmt.Errorf("%w: want 1 to %d characters", ErrBadRoom, MaxRoomName)
	}
	for i, r := range name {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r):
		case i > 0 && (r == '-' || r == '_' || r == '.'):
		default:
			return fmt.Errorf("%w: %q: only letters, digits and - _ . (not first) are allowed", ErrBadRoom, r)
		}
	}
	return nil
}

// checkSession checks a session id: 1 to maxSession ASCII letters and digits.
func checkSession(s string) error {
	if s == "" || len(s) > maxSession {
		return errors.New("bad session id length")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return errors.New("bad session id")
		}
	}
	return nil
}

// Check returns an error wrapping ErrBadSignal unless sig is an offer or
// answer with a parseable SDP of at most MaxSDP bytes, or a candidate
// whose fields are at most a kilobyte.
func (sig *Signal) Check() error {
	switch sig.Type {
	case "offer", "answer":
		if sig.Candidate != nil {
			return fmt.Errorf("%w: an %s carries no candidate", ErrBadSignal, sig.Type)
		}
		if sig.SDP == "" || len(sig.SDP) > MaxSDP {
			return fmt.Errorf("%w: SDP of %d bytes, want 1 to %d", ErrBadSignal, len(sig.SDP), MaxSDP)
		}
		var sd sdp.SessionDescription
		if err := sd.UnmarshalString(sig.SDP); err != nil {
			return fmt.Errorf("%w: SDP: %w", ErrBadSignal, err)
		}
	case "candidate":
		c := sig.Candidate
		if c == nil || sig.SDP != "" {
			return fmt.Errorf("%w: a candidate carries a candidate and no SDP", ErrBadSignal)
		}
		if len(c.Candidate) > maxCandidate || c.SDPMid != nil && len(*c.SDPMid) > maxCandidate ||
			c.UsernameFragment != nil && len(*c.UsernameFragment) > maxCandidate {
			return fmt.Errorf("%w: candidate over %d bytes", ErrBadSignal, maxCandidate)
		}
		if !utf8.ValidString(c.Candidate) {
			return fmt.Errorf("%w: candidate is not UTF-8", ErrBadSignal)
		}
	default:
		return fmt.Errorf("%w: type %q, want offer, answer or candidate", ErrBadSignal, sig.Type)
	}
	return nil
}

// decodeRequest parses and checks a call message from a peer.
func decodeRequest(b []byte) (*request, error) {
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("call message of %d bytes, limit %d", len(b), MaxMessage)
	}
	var r request
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bad call message: %w", err)
	}
	if err := CheckRoom(r.Room); err != nil {
		return nil, err
	}
	if err := checkSession(r.Session); err != nil {
		return nil, err
	}
	if r.Seq == 0 {
		return nil, errors.New("call message without a number")
	}
	switch r.Op {
	case opJoin:
		if len(r.Skip) > maxSkip {
			return nil, fmt.Errorf("join skips %d nodes, limit %d", len(r.Skip), maxSkip)
		}
		for _, id := range r.Skip {
			if _, err := mesh.ParseID(string(id)); err != nil {
				return nil, err
			}
		}
	case opLeave, opCheck:
	case opState:
		if r.State != stateJoined && r.State != stateFull {
			return nil, fmt.Errorf("bad state %q", r.State)
		}
		if r.Peer != nil {
			if err := r.Peer.check(); err != nil {
				return nil, err
			}
		}
	case opSignal:
		if err := checkSession(r.From); err != nil {
			return nil, err
		}
		if r.Signal == nil {
			return nil, fmt.Errorf("%w: none", ErrBadSignal)
		}
		if err := r.Signal.Check(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown call operation %q", r.Op)
	}
	return &r, nil
}

// decodeReply parses and checks an owner's answer to a join.
func decodeReply(b []byte) (*reply, error) {
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("call reply of %d bytes, limit %d", len(b), MaxMessage)
	}
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bad call reply: %w", err)
	}
	switch r.State {
	case stateJoined, stateFull:
	case stateRedirect:
		if _, err := mesh.ParseID(string(r.Owner)); err != nil {
			return nil, fmt.Errorf("redirect: %w", err)
		}
	default:
		return nil, fmt.Errorf("bad state %q in call reply", r.State)
	}
	if r.Peer != nil {
		if err := r.Peer.check(); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

func (m *Member) check() error {
	if _, err := mesh.ParseID(string(m.Node)); err != nil {
		return err
	}
	return checkSession(m.Session)
}
