package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Params are extra Qualys request parameters, given as a URL-encoded query
// ("show_tags=1&status=New,Active") and parsed when loaded.
type Params url.Values

// UnmarshalText parses a URL-encoded query.
func (p *Params) UnmarshalText(b []byte) error {
	v, err := url.ParseQuery(string(b))
	if err != nil {
		return fmt.Errorf("not a URL-encoded query (like a=1&b=x,y): %w", err)
	}
	*p = Params(v)
	return nil
}

// MarshalText encodes the parameters back, sorted by key.
func (p Params) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p Params) String() string { return url.Values(p).Encode() }

// Values returns a copy the caller may change.
func (p Params) Values() url.Values {
	out := make(url.Values, len(p))
	for k, v := range p {
		out[k] = slices.Clone(v)
	}
	return out
}

// controlledParams are set by qfetch on every request (paging, batching,
// the run window, the output shape); an operator value would break them.
var controlledParams = []string{"action", "details", "id_max", "id_min", "ids", "output_format",
	"truncation_limit", "vm_processed_after", "vm_processed_before"}

// check names the parameters p may not carry.
func (p Params) check() error {
	var bad []string
	for k := range p {
		if k == "" {
			return errors.New("has a parameter without a name")
		}
		if slices.Contains(controlledParams, strings.ToLower(k)) {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	if len(bad) == 1 {
		return fmt.Errorf("parameter %s is set by qfetch and cannot be given here", bad[0])
	}
	return fmt.Errorf("parameters %s are set by qfetch and cannot be given here", strings.Join(bad, ", "))
}
