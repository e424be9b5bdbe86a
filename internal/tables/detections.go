package tables

import (
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/qualys/xmlscan"
)

// rootDetections is the detection API's document.
const rootDetections = "HOST_LIST_VM_DETECTION_OUTPUT"

// detParser is the xmlscan.Handler that turns a detection document into
// rows: one per HOST/DETECTION_LIST/DETECTION, with its HOST's columns.
// Rows are made as each DETECTION closes, so a HOST's columns must come
// before its DETECTION_LIST, as the DTD orders them.
type detParser struct {
	scanBase
	sink   *sink[DetectionRow]
	host   hostState
	cur    *DetectionRow
	sawQID bool
	text   textBuf
	qids   map[int32]struct{} // the file's, for MetaQIDs
}

func (p *detParser) Start(parent xmlscan.Context, name []byte, off int64) (xmlscan.Context, error) {
	if ctx, ok, err := envelope(parent, name, off, rootDetections); ok {
		return ctx, err
	}
	ctx := xmlscan.Skip
	switch parent {
	case ctxResponse:
		if string(name) == "HOST_LIST" {
			ctx = ctxHostList
		}
	case ctxHostList:
		if string(name) == "HOST" {
			p.host.start(off - int64(len(name)) - 1)
			p.units++
			ctx = ctxHost
		}
	case ctxHost:
		if string(name) == "DETECTION_LIST" {
			if !p.host.sawID {
				return xmlscan.Skip, fault(off, "HOST without an ID before its DETECTION_LIST")
			}
			ctx = ctxDetList
		} else {
			ctx = hostChild(name)
		}
	case ctxDNSData, ctxTags, ctxTag:
		ctx = hostInner(parent, name)
		if ctx == ctxTag {
			p.host.tag = Tag{}
		}
	case ctxDetList:
		if string(name) == "DETECTION" {
			p.startDetection(off - int64(len(name)) - 1)
			ctx = ctxDet
		}
	case ctxDet:
		ctx = detChild(name)
		switch ctx {
		case fQDS:
			p.f.captureAttrs(off)
		case ctxQDSFactors:
			p.cur.QDSFactors = p.cur.QDSFactors[:0]
		}
	case ctxQDSFactors:
		if string(name) == "QDS_FACTOR" {
			p.f.captureAttrs(off)
			ctx = fQDSFactor
		}
	}
	if ctx&xmlscan.WantText != 0 {
		limit := maxText
		if ctx == fResults {
			limit = maxResults
		}
		p.text.start(limit)
	}
	return ctx, nil
}

func detChild(name []byte) xmlscan.Context {
	switch string(name) {
	case "UNIQUE_VULN_ID":
		return fUniqueVulnID
	case "QID":
		return fQID
	case "TYPE":
		return fType
	case "SEVERITY":
		return fSeverity
	case "PORT":
		return fPort
	case "PROTOCOL":
		return fProtocol
	case "FQDN":
		return fFQDN
	case "SSL":
		return fSSL
	case "INSTANCE":
		return fInstance
	case "RESULTS":
		return fResults
	case "STATUS":
		return fStatus
	case "FIRST_FOUND_DATETIME":
		return fFirstFound
	case "LAST_FOUND_DATETIME":
		return fLastFound
	case "QDS":
		return fQDS
	case "QDS_FACTORS":
		return ctxQDSFactors
	case "TIMES_FOUND":
		return fTimesFound
	case "LAST_TEST_DATETIME":
		return fLastTest
	case "LAST_UPDATE_DATETIME":
		return fLastUpdate
	case "LAST_FIXED_DATETIME":
		return fLastFixed
	case "FIRST_REOPENED_DATETIME":
		return fFirstReopened
	case "LAST_REOPENED_DATETIME":
		return fLastReopened
	case "TIMES_REOPENED":
		return fTimesReopened
	case "SERVICE":
		return fService
	case "IS_IGNORED":
		return fIgnored
	case "IS_DISABLED":
		return fDisabled
	case "AFFECT_RUNNING_KERNEL":
		return fKernel
	case "AFFECT_RUNNING_SERVICE":
		return fRunningService
	case "AFFECT_EXPLOITABLE_CONFIG":
		return fExploitable
	case "LAST_PROCESSED_DATETIME":
		return fLastProcessed
	}
	return xmlscan.Skip
}

// startDetection readies the next row; the QDS_FACTORS slice of the row
// it reuses is kept for its room.
func (p *detParser) startDetection(off int64) {
	r := p.sink.next()
	factors := r.QDSFactors[:0]
	*r = DetectionRow{sourceCols: p.src}
	r.SourceOffset = off
	r.QDSFactors = factors
	p.cur, p.sawQID = r, false
}

func (p *detParser) Text(_ xmlscan.Context, b []byte, off int64) error {
	return p.text.add(b, off, p.f.s.Path)
}

func (p *detParser) End(ctx xmlscan.Context, off int64) error {
	switch ctx {
	case ctxTag:
		p.host.endTag()
		return nil
	case ctxDet:
		return p.endDetection(off)
	}
	if ctx&xmlscan.WantText == 0 {
		return nil
	}
	if ctx == fResults {
		// Scanner output, kept as sent: its whitespace (a table's tabs,
		// a last newline) is part of it.
		if len(p.text.b) > 0 {
			p.cur.Results = string(p.text.b)
		}
		return nil
	}
	v := p.text.value()
	if ok, err := p.host.set(ctx, v, off); ok {
		return err
	}
	return p.setDetection(ctx, v, off)
}

func (p *detParser) endDetection(off int64) error {
	r := p.cur
	if !p.sawQID {
		return fault(off, "DETECTION without a QID")
	}
	if len(r.QDSFactors) == 0 {
		r.QDSFactors = nil // NULL, not an empty list
	}
	r.hostCols = p.host.cols
	r.hostCols.link()
	size := len(r.Results) + len(r.FQDN) + len(r.Instance) + len(r.Service) + 32*len(r.QDSFactors) + r.hostCols.textSize()
	if r.QID > 0 {
		p.qids[r.QID] = struct{}{}
	}
	return p.committed(p.sink.commit(size))
}

func (p *detParser) setDetection(f xmlscan.Context, v []byte, off int64) error {
	r, in := p.cur, p.host.in
	switch f {
	case fUniqueVulnID:
		return setInt64(&r.UniqueVulnID, &r.uniqueVulnID, v, off, "UNIQUE_VULN_ID")
	case fQID:
		var err error
		r.QID, err = parseQID(v, off)
		p.sawQID = err == nil
		return err
	case fType:
		r.Type = in.get(v)
	case fSeverity:
		return setInt32(&r.Severity, &r.severity, v, off, "SEVERITY")
	case fPort:
		return setInt32(&r.Port, &r.port, v, off, "PORT")
	case fProtocol:
		r.Protocol = in.get(v)
	case fFQDN:
		r.FQDN = string(v)
	case fSSL:
		return setBool(&r.SSL, &r.ssl, v, off, "SSL")
	case fInstance:
		r.Instance = string(v)
	case fStatus:
		r.Status = in.get(v)
	case fFirstFound:
		return setTime(&r.FirstFoundDatetime, v, off, "FIRST_FOUND_DATETIME")
	case fLastFound:
		return setTime(&r.LastFoundDatetime, v, off, "LAST_FOUND_DATETIME")
	case fQDS:
		if sev, ok := p.f.attr("severity"); ok {
			r.QDSSeverity = in.get(sev)
		}
		return setInt32(&r.QDS, &r.qds, v, off, "QDS")
	case fQDSFactor:
		name, _ := p.f.attr("name")
		r.QDSFactors = append(r.QDSFactors, QDSFactor{Name: in.get(name), Value: in.get(v)})
	case fTimesFound:
		return setInt32(&r.TimesFound, &r.timesFound, v, off, "TIMES_FOUND")
	case fLastTest:
		return setTime(&r.LastTestDatetime, v, off, "LAST_TEST_DATETIME")
	case fLastUpdate:
		return setTime(&r.LastUpdateDatetime, v, off, "LAST_UPDATE_DATETIME")
	case fLastFixed:
		return setTime(&r.LastFixedDatetime, v, off, "LAST_FIXED_DATETIME")
	case fFirstReopened:
		return setTime(&r.FirstReopenedDatetime, v, off, "FIRST_REOPENED_DATETIME")
	case fLastReopened:
		return setTime(&r.LastReopenedDatetime, v, off, "LAST_REOPENED_DATETIME")
	case fTimesReopened:
		return setInt32(&r.TimesReopened, &r.timesReopened, v, off, "TIMES_REOPENED")
	case fService:
		r.Service = in.get(v)
	case fIgnored:
		return setBool(&r.IsIgnored, &r.ignored, v, off, "IS_IGNORED")
	case fDisabled:
		return setBool(&r.IsDisabled, &r.disabled, v, off, "IS_DISABLED")
	case fKernel:
		return setBool(&r.AffectRunningKernel, &r.kernel, v, off, "AFFECT_RUNNING_KERNEL")
	case fRunningService:
		return setBool(&r.AffectRunningService, &r.service, v, off, "AFFECT_RUNNING_SERVICE")
	case fExploitable:
		return setBool(&r.AffectExploitableConfig, &r.exploit, v, off, "AFFECT_EXPLOITABLE_CONFIG")
	case fLastProcessed:
		return setTime(&r.LastProcessedDatetime, v, off, "LAST_PROCESSED_DATETIME")
	}
	return nil
}

// writeQIDs puts the file's distinct QIDs into its footer (MetaQIDs), so
// that a run's table manifest can list them without reading its rows.
func (p *detParser) writeQIDs() {
	ids := make([]uint64, 0, len(p.qids))
	for q := range p.qids {
		ids = append(ids, uint64(q))
	}
	p.sink.w.SetKeyValueMetadata(MetaQIDs, hostids.Of(ids).String())
}
