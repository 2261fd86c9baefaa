package live

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/catnest/catnest/mesh"
)

// Room is one live room as the index knows it.
type Room struct {
	// ID is derived from Host and Nonce (roomID), so no other node can
	// issue a record for the room.
	ID          string  `json:"id"`
	Nonce       []byte  `json:"nonce"`
	Host        mesh.ID `json:"host"`
	HostName    string  `json:"host_name"`
	Title       string  `json:"title"`
	Description string  `json:"description"`
	// Since is when the room was created.
	Since time.Time `json:"since"`
	// Seq orders the host's records of the room: the highest wins.
	Seq uint64 `json:"seq"`
	// Live is false in the record that ends the room.
	Live bool `json:"live"`
	// Viewers counts the WHEP viewers down the whole tree, as the host last
	// heard.
	Viewers  int  `json:"viewers"`
	HasCover bool `json:"has_cover"`
	// Chat is the chat channel of the room, if the host made one.
	Chat string `json:"chat,omitempty"`
}

// Limits of a room record.
const (
	MaxTitle       = 120
	MaxDescription = 2000
	maxNonce       = 32
	maxRoomRecord  = 8 << 10
	// MaxCover bounds a room's cover image.
	MaxCover = 128 << 10
	// roomTopic is the broadcast topic of room records.
	roomTopic = "live/rooms"
	// roomContext is the signature context of room records.
	roomContext = "catnest live room v1"
)

// roomID derives a room's ID from its host and a nonce.
func roomID(host mesh.ID, nonce []byte) string {
	h := sha256.New()
	h.Write([]byte(host))
	h.Write([]byte{0})
	h.Write(nonce)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// checkMeta checks a room's title and description.
func checkMeta(title, desc string) error {
	switch {
	case title == "":
		return fmt.Errorf("%w: a room needs a title", ErrBadInput)
	case len(title) > MaxTitle, !utf8.ValidString(title):
		return fmt.Errorf("%w: title longer than %d bytes or not UTF-8", ErrBadInput, MaxTitle)
	case len(desc) > MaxDescription, !utf8.ValidString(desc):
		return fmt.Errorf("%w: description longer than %d bytes or not UTF-8", ErrBadInput, MaxDescription)
	}
	return nil
}

// decodeRoom opens a signed room record and checks that its signer is its
// host and its ID is the host's.
func decodeRoom(b []byte) (Room, error) {
	var r Room
	signer, err := open(b, maxRoomRecord, roomContext, &r)
	if err != nil {
		return Room{}, err
	}
	switch {
	case signer != r.Host:
		return Room{}, fmt.Errorf("%w: room record signed by %s, not its host %s", errBadRecord, signer.Short(), r.Host.Short())
	case len(r.Nonce) == 0 || len(r.Nonce) > maxNonce:
		return Room{}, fmt.Errorf("%w: nonce of %d bytes", errBadRecord, len(r.Nonce))
	case r.ID != roomID(r.Host, r.Nonce):
		return Room{}, fmt.Errorf("%w: room ID is not the host's", errBadRecord)
	case r.Viewers < 0 || len(r.Chat) > 128 || len(r.HostName) > 256:
		return Room{}, fmt.Errorf("%w: field out of bounds", errBadRecord)
	}
	if err := checkMeta(r.Title, r.Description); err != nil {
		return Room{}, fmt.Errorf("%w: %w", errBadRecord, err)
	}
	return r, nil
}
