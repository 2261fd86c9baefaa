package mesh

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pion/webrtc/v4"
)

// maxConnectionID bounds the PeerJS connection id a peer may pick.
const maxConnectionID = 128

// The decoders below take the payload of a relayed signal message, which
// the signal client has already bounded to signal.MaxMessageSize.

func decodeOffer(b []byte) (offerPayload, error) {
	var p offerPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("bad offer: %w", err)
	}
	if p.SDP.Type != webrtc.SDPTypeOffer || p.SDP.SDP == "" {
		return p, errors.New("bad offer: no offer SDP")
	}
	return p, checkConnectionID(p.ConnectionID)
}

func decodeAnswer(b []byte) (answerPayload, error) {
	var p answerPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("bad answer: %w", err)
	}
	if p.SDP.Type != webrtc.SDPTypeAnswer || p.SDP.SDP == "" {
		return p, errors.New("bad answer: no answer SDP")
	}
	return p, checkConnectionID(p.ConnectionID)
}

func decodeCandidate(b []byte) (candidatePayload, error) {
	var p candidatePayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("bad candidate: %w", err)
	}
	return p, checkConnectionID(p.ConnectionID)
}

func checkConnectionID(s string) error {
	if s == "" || len(s) > maxConnectionID {
		return fmt.Errorf("bad connection id of length %d", len(s))
	}
	return nil
}
