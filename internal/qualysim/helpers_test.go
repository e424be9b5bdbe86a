package qualysim

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fixture is a simulator behind a real HTTP server.
type fixture struct {
	sim *Sim
	srv *httptest.Server
}

// testConfig is small and unlimited; tests that need limits set them.
// encoding/xml parses about 10 MB/s (a tenth of that under -race), so
// bodies stay well under a megabyte.
func testConfig() Config {
	return Config{Seed: 7, Hosts: 300, MeanDetections: 3, ResultsSize: 60, ConcurrencyLimit: Off, RateLimit: Off}
}

func setup(t testing.TB, cfg Config) *fixture {
	t.Helper()
	sim := New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close) // runs first: ends stalls so srv.Close does not wait for them
	return &fixture{sim: sim, srv: srv}
}

const (
	hostListPath  = "/api/2.0/fo/asset/host/"
	detectionPath = "/api/2.0/fo/asset/host/vm/detection/"
)

// answer is one raw HTTP exchange.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error // from reading the body
}

// call sends an authenticated form POST (or GET when method is GET) with
// X-Requested-With, unless the request is changed by edit.
func (f *fixture) call(t testing.TB, method, path string, form url.Values, edit ...func(*http.Request)) answer {
	t.Helper()
	return f.callCtx(context.Background(), t, method, path, form.Encode(), edit...)
}

func (f *fixture) callCtx(ctx context.Context, t testing.TB, method, path, encoded string, edit ...func(*http.Request)) answer {
	t.Helper()
	a, err := f.tryCall(ctx, method, path, encoded, edit...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return a
}

// tryCall is callCtx for goroutines other than the test's: it returns the
// error instead of failing the test.
func (f *fixture) tryCall(ctx context.Context, method, path, encoded string, edit ...func(*http.Request)) (answer, error) {
	target := f.srv.URL + path
	var body io.Reader
	if method == http.MethodGet {
		if encoded != "" {
			target += "?" + encoded
		}
	} else {
		body = strings.NewReader(encoded)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return answer{}, err
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.SetBasicAuth(f.sim.Username(), f.sim.Password())
	req.Header.Set("X-Requested-With", "qualysim-test")
	for _, e := range edit {
		e(req)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, err: rerr}, nil
}

// getURL fetches an absolute URL (a WARNING URL) with credentials.
func (f *fixture) getURL(t testing.TB, raw string) answer {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("bad URL %q: %v", raw, err)
	}
	return f.call(t, http.MethodGet, u.Path, u.Query())
}

func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// doc is what a test needs from a parsed document.
type doc struct {
	root      string
	datetime  string
	hosts     []uint64       // HOST/ID in document order
	dets      map[uint64]int // DETECTION count per HOST
	statuses  map[string]int
	types     map[string]int
	processed map[uint64]string // LAST_PROCESSED_DATETIME per host (all equal within a host)
	ids       []uint64          // ID_SET, ranges expanded
	idRanges  int
	hasList   bool // HOST_LIST or ID_SET present
	warnCode  int
	warnText  string
	warnURL   string
	code      int
	text      string
	items     map[string]string
	retNumber int // GENERIC_RETURN RETURN number
}

// parseDoc stream-decodes body with encoding/xml in strict mode and fails
// the test unless the whole document is well-formed.
func parseDoc(t testing.TB, body []byte) doc {
	t.Helper()
	d, err := decodeDoc(body)
	if err != nil {
		t.Fatalf("document does not parse: %v\n%s", err, clip(string(body), 2000))
	}
	return d
}

func decodeDoc(body []byte) (doc, error) {
	d := doc{dets: map[uint64]int{}, statuses: map[string]int{}, types: map[string]int{},
		processed: map[uint64]string{}, items: map[string]string{}}
	dec := xml.NewDecoder(bytes.NewReader(body))
	var path []string
	var curHost uint64
	var itemKey string
	ended := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return d, err
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if ended {
				return d, errors.New("element after the root")
			}
			name := tk.Name.Local
			if len(path) == 0 {
				d.root = name
			}
			path = append(path, name)
			switch name {
			case "DETECTION":
				d.dets[curHost]++
			case "HOST_LIST", "ID_SET":
				d.hasList = true
			case "RETURN":
				for _, a := range tk.Attr {
					if a.Name.Local == "number" {
						d.retNumber, _ = strconv.Atoi(a.Value)
					}
				}
			}
		case xml.EndElement:
			path = path[:len(path)-1]
			if len(path) == 0 {
				ended = true
			}
		case xml.CharData:
			if len(path) == 0 {
				if len(bytes.TrimSpace(tk)) > 0 {
					return d, errors.New("text outside the root")
				}
				continue
			}
			text := strings.TrimSpace(string(tk))
			parent := ""
			if len(path) > 1 {
				parent = path[len(path)-2]
			}
			switch leaf := path[len(path)-1]; {
			case leaf == "DATETIME" && parent == "RESPONSE":
				d.datetime = text
			case leaf == "ID" && parent == "HOST":
				id, err := strconv.ParseUint(text, 10, 64)
				if err != nil {
					return d, err
				}
				curHost = id
				d.hosts = append(d.hosts, id)
			case leaf == "ID" && parent == "ID_SET":
				id, err := strconv.ParseUint(text, 10, 64)
				if err != nil {
					return d, err
				}
				d.ids = append(d.ids, id)
			case leaf == "ID_RANGE":
				a, b, _ := strings.Cut(text, "-")
				lo, err1 := strconv.ParseUint(a, 10, 64)
				hi, err2 := strconv.ParseUint(b, 10, 64)
				if err1 != nil || err2 != nil || lo >= hi {
					return d, errors.New("bad ID_RANGE " + text)
				}
				d.idRanges++
				for id := lo; id <= hi; id++ {
					d.ids = append(d.ids, id)
				}
			case leaf == "STATUS" && parent == "DETECTION":
				d.statuses[text]++
			case leaf == "TYPE" && parent == "DETECTION":
				d.types[text]++
			case leaf == "LAST_PROCESSED_DATETIME":
				if prev, ok := d.processed[curHost]; ok && prev != text {
					return d, errors.New("one host, two processing times")
				}
				d.processed[curHost] = text
			case leaf == "CODE" && parent == "WARNING":
				d.warnCode, _ = strconv.Atoi(text)
			case leaf == "TEXT" && parent == "WARNING":
				d.warnText = text
			case leaf == "URL" && parent == "WARNING":
				d.warnURL = text
			case leaf == "CODE" && parent == "RESPONSE":
				d.code, _ = strconv.Atoi(text)
			case leaf == "TEXT" && parent == "RESPONSE":
				d.text = text
			case leaf == "KEY":
				itemKey = text
			case leaf == "VALUE":
				d.items[itemKey] = text
			}
		}
	}
	if !ended {
		return d, io.ErrUnexpectedEOF
	}
	return d, nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// pageAll follows WARNING URLs from a first request and returns every
// page's document.
func (f *fixture) pageAll(t testing.TB, path string, first url.Values) []doc {
	t.Helper()
	a := f.call(t, http.MethodPost, path, first)
	var docs []doc
	for {
		if a.status != 200 || a.err != nil {
			t.Fatalf("page %d: status %d, err %v: %s", len(docs)+1, a.status, a.err, clip(string(a.body), 500))
		}
		d := parseDoc(t, a.body)
		docs = append(docs, d)
		if d.warnURL == "" {
			return docs
		}
		if len(docs) > 100000 {
			t.Fatal("paging does not end")
		}
		a = f.getURL(t, d.warnURL)
	}
}

func collectIDs(seq func(func(uint64) bool)) []uint64 {
	var ids []uint64
	for id := range seq {
		ids = append(ids, id)
	}
	return ids
}
