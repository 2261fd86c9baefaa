package main

import (
	"context"
	_ "embed"
)

// The demo room's media, made by demolive/make.sh: a test pattern and a
// tone, looped.
var (
	//go:embed demolive/testpattern.ivf
	demoIVF []byte
	//go:embed demolive/tone.ogg
	demoOgg []byte
)

// demoLive has the first node host a live room that streams the test
// pattern with a tone, so the Live view plays with one command.
func demoLive(ctx context.Context, host *node) error {
	title := "Test pattern"
	chat := ""
	if ch, err := host.chat.CreateChannel(ctx, title, false); err == nil {
		chat = ch.ID
	}
	room, err := host.live.Create(ctx, title, "A looped test pattern with a 440 Hz tone, relayed down the tree of nodes.", chat)
	if err != nil {
		return err
	}
	return host.live.PublishFiles(room.ID, demoIVF, demoOgg)
}
