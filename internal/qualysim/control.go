package qualysim

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The control plane under /__sim/, for tests in other processes and for
// people. It needs no credentials: bind the simulator to loopback.
//
//	GET  /__sim/stats                     Stats as JSON
//	POST /__sim/stats/reset               zero the counters and peaks
//	GET  /__sim/clock                     {"now": RFC 3339, "ticking": bool}
//	POST /__sim/clock?advance=36h         move the clock forward (Go duration; negative moves back)
//	POST /__sim/clock?set=2026-02-01T00:00:00Z
//	GET  /__sim/faults                    the fault settings (Faults as JSON)
//	PUT  /__sim/faults                    replace them with the JSON body
//	POST /__sim/faults/force?endpoint=detection&kind=reset&n=3
//	POST /__sim/faults/clear              drop queued forced faults
//	POST /__sim/faults/outage?endpoint=detection&kind=503[&for=60s]
//	                                      start an outage (Sim.Outage); {"outage": id}; for= ends it after that real time
//	POST /__sim/faults/outage/end[?id=N]  end outage N, or every outage
//	POST /__sim/account?expired=1         also reject_logins=1; 0 switches off
//	GET  /__sim/config                    seed, host counts, start, clock
//	GET  /__sim/truth?kind=hostlist|detection|kb&<API parameters>[&at=RFC 3339][&count_only=1]
//
// /__sim/truth takes the API's own parameters (ids, id_min, id_max,
// vm_processed_after/_before, status, show_igs) and answers
// {"kind", "at", "ids": [...], "hosts": n} for hostlist or
// {"kind", "at", "counts": [[id, n], ...], "hosts": n, "detections": n} for
// detection; count_only=1 leaves out the list. Truncation parameters are
// ignored: the truth is all pages together. kind=kb takes the KnowledgeBase
// parameters and answers {"kind", "at", "qids": [...], "count": n}; with
// rows=1 it adds "vulns": the KBVuln of each (KBSelect), and with
// late_after=RFC 3339 "late": KBLate(late_after, at), so that a test in
// another process holds qfetch's KB objects to the same truth.

func (s *Sim) serveControl(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch r.Method + " " + r.URL.Path {
	case "GET /__sim/stats":
		writeJSON(w, s.Stats())
	case "POST /__sim/stats/reset":
		s.ResetStats()
		writeJSON(w, s.Stats())
	case "GET /__sim/clock", "POST /__sim/clock":
		if v := q.Get("advance"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				http.Error(w, "advance: "+err.Error(), http.StatusBadRequest)
				return
			}
			s.clock.Advance(d)
		}
		if v := q.Get("set"); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				http.Error(w, "set: "+err.Error(), http.StatusBadRequest)
				return
			}
			s.clock.Set(t)
		}
		writeJSON(w, map[string]any{"now": s.clock.Now(), "ticking": s.clock.Ticking()})
	case "GET /__sim/faults":
		writeJSON(w, s.Faults())
	case "PUT /__sim/faults", "POST /__sim/faults":
		var f Faults
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&f); err != nil {
			http.Error(w, "faults: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.SetFaults(f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, s.Faults())
	case "POST /__sim/faults/force":
		n, err := strconv.Atoi(q.Get("n"))
		if q.Get("n") == "" {
			n, err = 1, nil
		}
		if err == nil {
			err = s.ForceFault(Endpoint(q.Get("endpoint")), FaultKind(q.Get("kind")), n)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, map[string]any{"forced": q.Get("kind"), "endpoint": q.Get("endpoint"), "n": n})
	case "POST /__sim/faults/outage":
		s.serveOutage(w, q)
	case "POST /__sim/faults/outage/end":
		id := 0
		if v := q.Get("id"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				http.Error(w, "id must be a positive integer", http.StatusBadRequest)
				return
			}
			id = n
		}
		writeJSON(w, map[string]any{"ended": s.faults.endOutage(id)})
	case "POST /__sim/faults/clear":
		s.ClearForcedFaults()
		writeJSON(w, map[string]any{"cleared": true})
	case "POST /__sim/account":
		for key, set := range map[string]func(bool){"expired": s.SetAccountExpired, "reject_logins": s.SetRejectLogins} {
			if v := q.Get(key); v != "" {
				set(v == "1" || v == "true")
			}
		}
		f := s.Faults()
		writeJSON(w, map[string]any{"account_expired": f.AccountExpired, "reject_logins": f.RejectLogins})
	case "GET /__sim/config":
		c := s.cfg
		writeJSON(w, map[string]any{
			"seed": c.Seed, "hosts": c.Hosts, "new_hosts_per_day": c.NewHostsPerDay,
			"host_count_now": s.HostCount(time.Time{}), "start": c.Start, "now": s.clock.Now(),
			"processed_span": c.ProcessedSpan.String(), "id_ranges": c.IDRanges,
			"concurrency_limit": c.ConcurrencyLimit, "rate_limit": c.RateLimit, "rate_window": c.RateWindow.String(),
			"username": c.Username, "no_about": c.NoAbout,
			"kb_qids": c.KBQIDs, "kb_new_per_day": c.KBNewPerDay,
		})
	case "GET /__sim/truth":
		s.serveTruth(w, q)
	default:
		http.NotFound(w, r)
	}
}

// serveOutage starts an outage, ended by /__sim/faults/outage/end or after
// for=, so that a bench in another process can hold one for a real time.
func (s *Sim) serveOutage(w http.ResponseWriter, q url.Values) {
	var d time.Duration
	if v := q.Get("for"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			http.Error(w, "for must be a positive Go duration", http.StatusBadRequest)
			return
		}
	}
	id, err := s.startOutage(Endpoint(q.Get("endpoint")), FaultKind(q.Get("kind")))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if d > 0 {
		time.AfterFunc(d, func() { s.faults.endOutage(id) })
	}
	writeJSON(w, map[string]any{"outage": id, "endpoint": q.Get("endpoint"), "kind": q.Get("kind"), "for": d.String()})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// serveTruth streams the truth as JSON: a window can hold millions of hosts.
func (s *Sim) serveTruth(w http.ResponseWriter, q url.Values) {
	ep := epHostList
	switch q.Get("kind") {
	case "hostlist", "":
	case "detection":
		ep = epDetection
	case "kb":
		ep = epKB
	default:
		http.Error(w, "kind must be hostlist, detection or kb", http.StatusBadRequest)
		return
	}
	at := s.clock.Now()
	if v := q.Get("at"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			http.Error(w, "at: "+err.Error(), http.StatusBadRequest)
			return
		}
		at = t
	}
	countOnly := q.Get("count_only") == "1"
	var ps params
	for k, vs := range q {
		if k == "kind" || k == "at" || k == "count_only" || k == "rows" || k == "late_after" {
			continue
		}
		for _, v := range vs {
			ps = append(ps, param{key: k, val: v})
		}
	}
	if _, ok := ps.get("action"); !ok {
		ps = append(ps, param{key: "action", val: "list"})
	}
	req, aerr := parseRequest(ep, ps)
	if aerr != nil {
		http.Error(w, aerr.text, http.StatusBadRequest)
		return
	}
	if ep == epKB {
		s.serveKBTruth(w, req.kb, at, countOnly, q)
		return
	}
	f := req.filter
	f.At = at

	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	buf := make([]byte, 0, 64)
	bw.WriteString(`{"kind":"`)
	bw.WriteString(string(epNames[ep]))
	bw.WriteString(`","at":"`)
	bw.WriteString(at.UTC().Format(time.RFC3339))
	bw.WriteString(`"`)
	var hosts, dets int64
	if ep == epHostList {
		if !countOnly {
			bw.WriteString(`,"ids":[`)
		}
		for id := range s.Hosts(f) {
			if !countOnly {
				if hosts > 0 {
					bw.WriteByte(',')
				}
				bw.Write(strconv.AppendUint(buf[:0], id, 10))
			}
			hosts++
		}
	} else {
		if !countOnly {
			bw.WriteString(`,"counts":[`)
		}
		for id, n := range s.DetectionTruth(f) {
			if !countOnly {
				if hosts > 0 {
					bw.WriteByte(',')
				}
				b := append(buf[:0], '[')
				b = strconv.AppendUint(b, id, 10)
				b = append(b, ',')
				b = strconv.AppendInt(b, int64(n), 10)
				bw.Write(append(b, ']'))
			}
			hosts++
			dets += int64(n)
		}
	}
	if !countOnly {
		bw.WriteString("]")
	}
	bw.WriteString(`,"hosts":`)
	bw.Write(strconv.AppendInt(buf[:0], hosts, 10))
	if ep == epDetection {
		bw.WriteString(`,"detections":`)
		bw.Write(strconv.AppendInt(buf[:0], dets, 10))
	}
	bw.WriteString("}\n")
}
