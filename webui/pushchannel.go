package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/mesh"
)

// ChannelMembers is what a push to "the members of a channel" needs of the
// chat service (*chatlog.Service).
type ChannelMembers interface {
	// Members lists the online nodes that hold the channel (an id, or a
	// name only one channel has).
	Members(ctx context.Context, channel string) ([]mesh.ID, error)
}

// maxChannelKey bounds the "channel" of a push request.
const maxChannelKey = 256

// channelMembers resolves the "channel" of a push to the node ids of its
// online members other than this node; on failure it answers and returns
// false.
func (s *Server) channelMembers(w http.ResponseWriter, r *http.Request, channel string) ([]string, bool) {
	if s.cfg.Members == nil {
		writeError(w, http.StatusBadRequest, `pushes to a channel need chat on this node: give "to", the node ids`)
		return nil, false
	}
	if len(channel) > maxChannelKey {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("channel of %d bytes, at most %d", len(channel), maxChannelKey))
		return nil, false
	}
	ids, err := s.cfg.Members.Members(r.Context(), channel)
	switch {
	case errors.Is(err, chatlog.ErrUnknownChannel):
		writeError(w, http.StatusNotFound, err.Error())
		return nil, false
	case errors.Is(err, chatlog.ErrInvalidInput):
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, false
	case err != nil:
		s.filesError(w, r, err)
		return nil, false
	}
	var to []string
	for _, id := range ids {
		if id != s.node.ID() {
			to = append(to, string(id))
		}
	}
	if len(to) == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("channel %.80q has no online member but this node", channel))
		return nil, false
	}
	return to, true
}
