package app

import (
	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/nodeagent/internal/inspect"
)

// boundedLogger cuts long values before they are logged: an error text to
// inspect.MaxText, a list to inspect.MaxNotProgrammed items ("+N more"),
// so that a NACK naming thousands of entries is one readable line, not
// megabytes per update.
type boundedLogger struct{ hclog.Logger }

// bounded returns log cutting long values.
func bounded(log hclog.Logger) hclog.Logger { return boundedLogger{log} }

func (l boundedLogger) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, msg, boundArgs(args)...)
}
func (l boundedLogger) Trace(msg string, args ...any) { l.Logger.Trace(msg, boundArgs(args)...) }
func (l boundedLogger) Debug(msg string, args ...any) { l.Logger.Debug(msg, boundArgs(args)...) }
func (l boundedLogger) Info(msg string, args ...any)  { l.Logger.Info(msg, boundArgs(args)...) }
func (l boundedLogger) Warn(msg string, args ...any)  { l.Logger.Warn(msg, boundArgs(args)...) }
func (l boundedLogger) Error(msg string, args ...any) { l.Logger.Error(msg, boundArgs(args)...) }

func (l boundedLogger) With(args ...any) hclog.Logger {
	return boundedLogger{l.Logger.With(boundArgs(args)...)}
}
func (l boundedLogger) Named(name string) hclog.Logger { return boundedLogger{l.Logger.Named(name)} }
func (l boundedLogger) ResetNamed(name string) hclog.Logger {
	return boundedLogger{l.Logger.ResetNamed(name)}
}

// boundArgs returns the key/value pairs with each value bounded.
func boundArgs(args []any) []any {
	out := make([]any, len(args))
	for i, v := range args {
		if i%2 == 0 {
			out[i] = v // a key
			continue
		}
		out[i] = boundValue(v)
	}
	return out
}

func boundValue(v any) any {
	switch v := v.(type) {
	case error:
		return inspect.Cut(v.Error(), inspect.MaxText)
	case string:
		return inspect.Cut(v, inspect.MaxText)
	case []string:
		return inspect.CutList(v, inspect.MaxNotProgrammed, inspect.MaxText)
	}
	return v
}
