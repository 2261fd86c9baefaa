package chatlog

import (
	"context"
	"fmt"
	"slices"

	"github.com/catnest/catnest/mesh"
)

// Members lists the online nodes that hold the channel named by channel (a
// channel id, or a name that only one channel has): those whose directory
// record advertises it, this node among them if it joined. Chat keeps no
// membership list of its own; a node that joined a channel advertises it,
// and that is the group a push "to the members of a channel" reaches.
func (s *Service) Members(ctx context.Context, channel string) ([]mesh.ID, error) {
	holders := map[string][]mesh.ID{} // channel id -> nodes advertising it
	named := map[string]bool{}        // ids of the channels called channel
	for _, r := range s.mesh.Directory() {
		for _, a := range adverts(r) {
			if a.ID != channel && a.Name != channel {
				continue
			}
			if a.Name == channel {
				named[a.ID] = true
			}
			if !slices.Contains(holders[a.ID], r.ID) {
				holders[a.ID] = append(holders[a.ID], r.ID)
			}
		}
	}
	id := channel
	if _, ok := holders[channel]; !ok {
		// Not an id: a name, which must be one channel's only.
		switch len(named) {
		case 0:
			return nil, fmt.Errorf("%w: no online node holds a channel %.80q", ErrUnknownChannel, channel)
		case 1:
			for id = range named {
			}
		default:
			return nil, fmt.Errorf("%w: %d channels are named %.80q; give the channel's id", ErrInvalidInput, len(named), channel)
		}
	}
	ids := holders[id]
	slices.Sort(ids)
	return ids, nil
}
