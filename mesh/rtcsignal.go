package mesh

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
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

// offerMeta is the PeerJS metadata of a catnest offer: Cert is the
// sender's DTLS certificate (DER), which checkOfferCert checks.
type offerMeta struct {
	Catnest int    `json:"catnest"`
	Cert    []byte `json:"cert"`
}

// maxCertSize bounds the certificate an offer carries.
const maxCertSize = 4 << 10

// checkOfferCert checks that an offer from src carries src's DTLS
// certificate: its key hashes to src and the SDP's fingerprints are its
// hash. The handshake proves the key later; this check lets a node refuse
// at no cost an offer captured and replayed under another id, which could
// never complete but would hold a handshake slot until it timed out.
func checkOfferCert(src ID, p offerPayload) error {
	var meta offerMeta
	if len(p.Metadata) == 0 || json.Unmarshal(p.Metadata, &meta) != nil || len(meta.Cert) == 0 {
		return errors.New("offer carries no certificate")
	}
	if len(meta.Cert) > maxCertSize {
		return errors.New("offer certificate over the size limit")
	}
	got, err := idFromCertificate(meta.Cert)
	if err != nil {
		return err
	}
	if got != src {
		return fmt.Errorf("offer certificate is %s's, not the sender's", got.Short())
	}
	sum := sha256.Sum256(meta.Cert)
	want := strings.ToUpper(hex.EncodeToString(sum[:]))
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(p.SDP.SDP); err != nil {
		return fmt.Errorf("offer SDP: %w", err)
	}
	attrs := slices.Clone(sd.Attributes)
	for _, md := range sd.MediaDescriptions {
		attrs = append(attrs, md.Attributes...)
	}
	found := false
	for _, a := range attrs {
		if a.Key != "fingerprint" {
			continue
		}
		alg, fp, _ := strings.Cut(a.Value, " ")
		if !strings.EqualFold(alg, "sha-256") || strings.ToUpper(strings.ReplaceAll(fp, ":", "")) != want {
			return errors.New("offer SDP fingerprint is not of its certificate")
		}
		found = true
	}
	if !found {
		return errors.New("offer SDP has no fingerprint")
	}
	return nil
}
