package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
)

// Secret holds a password or key. Every way of printing it — fmt verbs
// (%v %+v %#v %s %q %x …), String, GoString, JSON, text marshalling, slog —
// shows "[redacted]", or "" when the secret is empty, so an operator can
// tell "not set" from "set" without seeing it. Reveal is the only way out.
//
// fmt cannot call methods on unexported struct fields, so keep Secret fields
// exported: a struct with an unexported Secret field prints it in clear.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself. Call it only where the value leaves for
// its one destination (a Basic auth header, the S3 signer).
func (s Secret) Reveal() string { return string(s) }

func (s Secret) shown() string {
	if s == "" {
		return ""
	}
	return redacted
}

func (s Secret) String() string   { return s.shown() }
func (s Secret) GoString() string { return s.shown() }

// Format covers every verb, including %x and %d that would otherwise print
// the string's bytes.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprint(f, strconv.Quote(s.shown()))
		return
	}
	fmt.Fprint(f, s.shown())
}

func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.shown()) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.shown()), nil }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(s.shown()) }
