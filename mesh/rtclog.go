package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// slogFactory routes pion's logs to slog. pion's Info and Warn are chatty
// about routine ICE and SCTP events (a trickled candidate that arrives
// late is a warning there), so they are logged at Debug and pion's errors
// at Warn: the node itself logs why a link failed. Trace is dropped.
type slogFactory struct{ log *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLeveled{log: f.log.With("pion", scope)}
}

type slogLeveled struct{ log *slog.Logger }

// quietErrors are pion's errors about a link that is going away, logged
// at Debug: nothing in them is for the user, who sees the link fail or
// go from the node's own lines.
//
// "Failed to accept data channel": a link's two channels are negotiated
// (ids 0 and 1), so pion's accept loop only meets a stream of ours when
// the link was closed as its SCTP association came up: pion marks the
// channels closed, then skips them as it opens the channels, and the
// peer's hello on stream 0 comes to the accept loop as a channel without
// its open message (TestPionAcceptAfterCloseQuiet). Links closed during
// setup (one of two dialled at once, a node stopping) showed it, one time
// in a hundred, on the demo's first screen. A channel a peer opens of
// its own that pion cannot accept is no more the user's: a node's peer
// has no use for one, and a guest page without its channel ends in the
// node's "guest connection failed".
var quietErrors = []string{"Failed to accept data channel"}

func quiet(msg string) bool {
	for _, q := range quietErrors {
		if strings.HasPrefix(msg, q) {
			return true
		}
	}
	return false
}

// errorLevel is the level pion's error msg is logged at.
func errorLevel(msg string) slog.Level {
	if quiet(msg) {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

func (l slogLeveled) emit(level slog.Level, msg string) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, msg)
	}
}

func (l slogLeveled) emitf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l slogLeveled) Trace(string)              {}
func (l slogLeveled) Tracef(string, ...any)     {}
func (l slogLeveled) Debug(msg string)          { l.emit(slog.LevelDebug, msg) }
func (l slogLeveled) Debugf(f string, a ...any) { l.emitf(slog.LevelDebug, f, a...) }
func (l slogLeveled) Info(msg string)           { l.emit(slog.LevelDebug, msg) }
func (l slogLeveled) Infof(f string, a ...any)  { l.emitf(slog.LevelDebug, f, a...) }
func (l slogLeveled) Warn(msg string)           { l.emit(slog.LevelDebug, msg) }
func (l slogLeveled) Warnf(f string, a ...any)  { l.emitf(slog.LevelDebug, f, a...) }
func (l slogLeveled) Error(msg string)          { l.emit(errorLevel(msg), msg) }
func (l slogLeveled) Errorf(f string, a ...any) { l.emitf(errorLevel(f), f, a...) }
