// Package logging builds the slog.Logger every qfetch binary uses: tint text on
// a terminal, JSON in a cluster, and a redaction rule that keeps secrets out (I7).
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/lmittmann/tint"
)

// Format names accepted by [New] and [ParseFormat].
const (
	FormatAuto = "auto" // text on a terminal, JSON otherwise
	FormatText = "text" // tint, coloured when the writer is a terminal
	FormatJSON = "json" // slog's JSON handler, one object per line
)

// New returns a logger writing to w. format is auto, text or json; level is
// debug, info, warn or error (both case-insensitive; empty means auto and
// info). isTerminal picks text for auto and turns colours on for text; pass
// [IsTerminal](os.Stderr) for the usual case.
//
// Both handlers apply the same redaction rule (see [Scrub] and [SecretKey]),
// in groups too.
func New(w io.Writer, format, level string, isTerminal bool) (*slog.Logger, error) {
	f, err := ParseFormat(format)
	if err != nil {
		return nil, err
	}
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	if f == FormatAuto {
		f = FormatJSON
		if isTerminal {
			f = FormatText
		}
	}
	if f == FormatText {
		return slog.New(tint.NewTextHandler(w, &tint.Options{
			Level:       lvl,
			ReplaceAttr: replacer(false),
			NoColor:     !isTerminal,
		})), nil
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level:       lvl,
		ReplaceAttr: replacer(true),
	})), nil
}

// ParseFormat checks a format name and returns it in lower case; "" is auto.
func ParseFormat(s string) (string, error) {
	switch f := strings.ToLower(strings.TrimSpace(s)); f {
	case "":
		return FormatAuto, nil
	case FormatAuto, FormatText, FormatJSON:
		return f, nil
	}
	return "", fmt.Errorf("log format must be auto, text or json, got %q", s)
}

// ParseLevel maps debug, info, warn and error to slog levels; "" is info.
// Numeric offsets ("info+2") are refused: operators get four levels.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level must be debug, info, warn or error, got %q", s)
}

// IsTerminal reports whether f is a character device, which is how a terminal
// looks to Stat without a new dependency. /dev/null is one too; colours sent
// there harm nobody.
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
