package tables

import (
	"bytes"

	"github.com/qfetch/qfetch/internal/qualys/xmlscan"
)

// rootHostList is the Host List API's document.
const rootHostList = "HOST_LIST_OUTPUT"

// hostParser is the xmlscan.Handler that turns a Host List page into rows:
// one per HOST_LIST/HOST (details=Basic or All), or per ID of ID_SET
// (details=None: the host ID alone).
type hostParser struct {
	scanBase
	sink  *sink[HostRow]
	host  hostState
	extra hostExtraCols
	text  textBuf
}

func (p *hostParser) Start(parent xmlscan.Context, name []byte, off int64) (xmlscan.Context, error) {
	if ctx, ok, err := envelope(parent, name, off, rootHostList); ok {
		return ctx, err
	}
	ctx := xmlscan.Skip
	switch parent {
	case ctxResponse:
		switch string(name) {
		case "HOST_LIST":
			ctx = ctxHostList
		case "ID_SET":
			ctx = ctxIDSet
		}
	case ctxIDSet:
		switch string(name) {
		case "ID":
			ctx = fID
		case "ID_RANGE":
			ctx = fIDRange
		}
	case ctxHostList:
		if string(name) == "HOST" {
			p.host.start(off - int64(len(name)) - 1)
			p.extra = hostExtraCols{}
			p.units++
			ctx = ctxHost
		}
	case ctxHost:
		if ctx = hostChild(name); ctx == xmlscan.Skip {
			ctx = hostExtraChild(name)
		}
	case ctxDNSData, ctxTags, ctxTag:
		ctx = hostInner(parent, name)
		if ctx == ctxTag {
			p.host.tag = Tag{}
		}
	}
	if ctx&xmlscan.WantText != 0 {
		p.text.start(maxText)
		if ctx == fID || ctx == fIDRange {
			p.host.start(off - int64(len(name)) - 1)
			p.extra = hostExtraCols{}
		}
	}
	return ctx, nil
}

func hostExtraChild(name []byte) xmlscan.Context {
	switch string(name) {
	case "LAST_COMPLIANCE_SCAN_DATETIME":
		return fLastCompliance
	case "LAST_SCAP_SCAN_DATETIME":
		return fLastSCAP
	case "OWNER":
		return fOwner
	case "COMMENTS":
		return fComments
	case "ASSET_GROUP_IDS":
		return fAssetGroupIDs
	case "ASSET_RISK_SCORE":
		return fAssetRisk
	case "TRURISK_SCORE":
		return fTruRisk
	}
	return xmlscan.Skip
}

func (p *hostParser) Text(_ xmlscan.Context, b []byte, off int64) error {
	return p.text.add(b, off, p.f.s.Path)
}

func (p *hostParser) End(ctx xmlscan.Context, off int64) error {
	switch ctx {
	case ctxTag:
		p.host.endTag()
		return nil
	case ctxHost:
		if !p.host.sawID {
			return fault(off, "HOST without an ID")
		}
		return p.emit(p.host.cols.HostID)
	}
	if ctx&xmlscan.WantText == 0 {
		return nil
	}
	v := p.text.value()
	if ok, err := p.host.set(ctx, v, off); ok {
		return err
	}
	e := &p.extra
	switch ctx {
	case fID:
		id, ok, err := parseInt(v, 64, off, "ID")
		if err == nil && (!ok || id <= 0) {
			err = fault(off, "ID %q is not a positive integer", v)
		}
		if err != nil {
			return err
		}
		p.units++
		return p.emit(id)
	case fIDRange:
		return p.idRange(v, off)
	case fLastCompliance:
		return setTime(&e.LastComplianceScanDatetime, v, off, "LAST_COMPLIANCE_SCAN_DATETIME")
	case fLastSCAP:
		return setTime(&e.LastSCAPScanDatetime, v, off, "LAST_SCAP_SCAN_DATETIME")
	case fOwner:
		e.Owner = string(v)
	case fComments:
		e.Comments = string(v)
	case fAssetGroupIDs:
		return p.assetGroups(v, off)
	case fAssetRisk:
		return setInt32(&e.AssetRiskScore, &e.assetRisk, v, off, "ASSET_RISK_SCORE")
	case fTruRisk:
		return setInt32(&e.TruRiskScore, &e.truRisk, v, off, "TRURISK_SCORE")
	}
	return nil
}

// assetGroups reads ASSET_GROUP_IDS, a comma list.
func (p *hostParser) assetGroups(v []byte, off int64) error {
	for part := range bytes.SplitSeq(v, []byte(",")) {
		id, ok, err := parseInt(bytes.TrimSpace(part), 64, off, "ASSET_GROUP_IDS")
		if err != nil {
			return err
		}
		if ok {
			p.extra.AssetGroupIDs = append(p.extra.AssetGroupIDs, id)
		}
	}
	return nil
}

// idRange emits a row for every ID of an ID_RANGE "a-b".
func (p *hostParser) idRange(v []byte, off int64) error {
	lo, hi, _ := bytes.Cut(v, []byte("-"))
	a, okA, errA := parseInt(bytes.TrimSpace(lo), 64, off, "ID_RANGE")
	b, okB, errB := parseInt(bytes.TrimSpace(hi), 64, off, "ID_RANGE")
	switch {
	case errA != nil || errB != nil || !okA || !okB || a <= 0:
		return fault(off, "ID_RANGE %q is not a range of host IDs", v)
	case b < a:
		return fault(off, "ID_RANGE %q runs backwards", v)
	case b-a >= maxIDRange:
		return &xmlscan.Error{Kind: xmlscan.KindLimit, Offset: off, Msg: "ID_RANGE " + string(v) + " is too wide"}
	}
	for id := a; id <= b; id++ {
		p.units++
		if err := p.emit(id); err != nil {
			return err
		}
	}
	return nil
}

// emit writes the host just read (or, for an ID of ID_SET, id alone).
func (p *hostParser) emit(id int64) error {
	r := p.sink.next()
	*r = HostRow{sourceCols: p.src, hostCols: p.host.cols, hostExtraCols: p.extra}
	r.SourceOffset = p.host.off
	r.HostID = id
	r.hostCols.link()
	r.hostExtraCols.link()
	size := r.hostCols.textSize() + len(r.Owner) + len(r.Comments) + 8*len(r.AssetGroupIDs)
	return p.committed(p.sink.commit(size))
}
