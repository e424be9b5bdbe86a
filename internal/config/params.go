package config

import (
	"fmt"
	"net/url"
	"slices"

	"github.com/qfetch/qfetch/internal/qparams"
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

// checkHostList names the parameters p may not carry on a Host List
// request; checkDetection on a detection request (see package qparams).
func (p Params) checkHostList() error { return qparams.CheckHostList(url.Values(p)) }

func (p Params) checkDetection() error { return qparams.CheckDetection(url.Values(p)) }

// checkKB names the parameters p may not carry on a KnowledgeBase request.
func (p Params) checkKB() error { return qparams.CheckKB(url.Values(p)) }
