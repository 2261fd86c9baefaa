package mesh

import (
	"context"
	"fmt"
	"log/slog"

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
func (l slogLeveled) Error(msg string)          { l.emit(slog.LevelWarn, msg) }
func (l slogLeveled) Errorf(f string, a ...any) { l.emitf(slog.LevelWarn, f, a...) }
