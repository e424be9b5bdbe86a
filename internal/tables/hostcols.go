package tables

import (
	"github.com/qfetch/qfetch/internal/qualys/xmlscan"
)

// Element contexts: where an open element sits, as far as the parsers
// care. Elements they do not read are xmlscan.Skip.
const (
	ctxRoot xmlscan.Context = iota + 1
	ctxResponse
	ctxHostList
	ctxHost
	ctxDNSData
	ctxTags
	ctxTag
	ctxDetList
	ctxDet
	ctxQDSFactors
	ctxIDSet
)

// Contexts of the elements whose text becomes a column.
const (
	fHostID = xmlscan.WantText | (iota + 1)
	fAssetID
	fIP
	fIPv6
	fTracking
	fNetworkID
	fOS
	fOSCPE
	fDNS
	fDNSHostname
	fDNSDomain
	fDNSFQDN
	fNetBIOS
	fQGHostID
	fCloudProvider
	fCloudService
	fCloudResourceID
	fEC2InstanceID
	fLastScan
	fLastVMScanned
	fLastVMDuration
	fLastVMAuth
	fLastVMAuthDuration
	fLastPC
	fTagID
	fTagName

	// Host List only.
	fLastCompliance
	fLastSCAP
	fOwner
	fComments
	fAssetGroupIDs
	fAssetRisk
	fTruRisk
	fID
	fIDRange

	// DETECTION.
	fUniqueVulnID
	fQID
	fType
	fSeverity
	fPort
	fProtocol
	fFQDN
	fSSL
	fInstance
	fResults
	fStatus
	fFirstFound
	fLastFound
	fQDS
	fQDSFactor
	fTimesFound
	fLastTest
	fLastUpdate
	fLastFixed
	fFirstReopened
	fLastReopened
	fTimesReopened
	fService
	fIgnored
	fDisabled
	fKernel
	fRunningService
	fExploitable
	fLastProcessed
)

// hostChild is the context of a HOST child both APIs send. The detection
// API names the last scan LAST_SCAN_DATETIME, the Host List
// LAST_VULN_SCAN_DATETIME: one column.
func hostChild(name []byte) xmlscan.Context {
	switch string(name) {
	case "ID":
		return fHostID
	case "ASSET_ID":
		return fAssetID
	case "IP":
		return fIP
	case "IPV6":
		return fIPv6
	case "TRACKING_METHOD":
		return fTracking
	case "NETWORK_ID":
		return fNetworkID
	case "OS":
		return fOS
	case "OS_CPE":
		return fOSCPE
	case "DNS":
		return fDNS
	case "DNS_DATA":
		return ctxDNSData
	case "NETBIOS":
		return fNetBIOS
	case "QG_HOSTID":
		return fQGHostID
	case "CLOUD_PROVIDER":
		return fCloudProvider
	case "CLOUD_SERVICE":
		return fCloudService
	case "CLOUD_RESOURCE_ID":
		return fCloudResourceID
	case "EC2_INSTANCE_ID":
		return fEC2InstanceID
	case "LAST_SCAN_DATETIME", "LAST_VULN_SCAN_DATETIME":
		return fLastScan
	case "LAST_VM_SCANNED_DATE":
		return fLastVMScanned
	case "LAST_VM_SCANNED_DURATION":
		return fLastVMDuration
	case "LAST_VM_AUTH_SCANNED_DATE":
		return fLastVMAuth
	case "LAST_VM_AUTH_SCANNED_DURATION":
		return fLastVMAuthDuration
	case "LAST_PC_SCANNED_DATE":
		return fLastPC
	case "TAGS":
		return ctxTags
	}
	return xmlscan.Skip
}

// hostInner is the context of an element below DNS_DATA or TAGS.
func hostInner(parent xmlscan.Context, name []byte) xmlscan.Context {
	switch parent {
	case ctxDNSData:
		switch string(name) {
		case "HOSTNAME":
			return fDNSHostname
		case "DOMAIN":
			return fDNSDomain
		case "FQDN":
			return fDNSFQDN
		}
	case ctxTags:
		if string(name) == "TAG" {
			return ctxTag
		}
	case ctxTag:
		switch string(name) {
		case "TAG_ID":
			return fTagID
		case "NAME":
			return fTagName
		}
	}
	return xmlscan.Skip
}

// hostState is the HOST being read.
type hostState struct {
	cols  hostCols
	off   int64 // where its element starts
	sawID bool
	tag   Tag
	in    interner
}

func (h *hostState) start(off int64) {
	*h = hostState{off: off, in: h.in}
	if h.in == nil {
		h.in = interner{}
	}
}

// set stores the text v of the element of context f; it reports whether
// f is a HOST column.
func (h *hostState) set(f xmlscan.Context, v []byte, off int64) (bool, error) {
	c := &h.cols
	var err error
	switch f {
	case fHostID:
		var n int64
		var ok bool
		n, ok, err = parseInt(v, 64, off, "HOST ID")
		if err == nil && (!ok || n <= 0) {
			err = fault(off, "HOST ID %q is not a positive integer", v)
		}
		c.HostID, h.sawID = n, err == nil
	case fAssetID:
		err = setInt64(&c.AssetID, &c.assetID, v, off, "ASSET_ID")
	case fIP:
		c.IP = string(v)
	case fIPv6:
		c.IPv6 = string(v)
	case fTracking:
		c.TrackingMethod = h.in.get(v)
	case fNetworkID:
		err = setInt64(&c.NetworkID, &c.networkID, v, off, "NETWORK_ID")
	case fOS:
		c.OS = h.in.get(v)
	case fOSCPE:
		c.OSCPE = h.in.get(v)
	case fDNS:
		c.DNS = string(v)
	case fDNSHostname:
		c.DNSHostname = string(v)
	case fDNSDomain:
		c.DNSDomain = h.in.get(v)
	case fDNSFQDN:
		c.DNSFQDN = string(v)
	case fNetBIOS:
		c.NetBIOS = string(v)
	case fQGHostID:
		c.QGHostID = string(v)
	case fCloudProvider:
		c.CloudProvider = h.in.get(v)
	case fCloudService:
		c.CloudService = h.in.get(v)
	case fCloudResourceID:
		c.CloudResourceID = string(v)
	case fEC2InstanceID:
		c.EC2InstanceID = string(v)
	case fLastScan:
		err = setTime(&c.LastScanDatetime, v, off, "LAST_SCAN_DATETIME")
	case fLastVMScanned:
		err = setTime(&c.LastVMScannedDate, v, off, "LAST_VM_SCANNED_DATE")
	case fLastVMDuration:
		err = setInt32(&c.LastVMScannedDuration, &c.vmDuration, v, off, "LAST_VM_SCANNED_DURATION")
	case fLastVMAuth:
		err = setTime(&c.LastVMAuthScannedDate, v, off, "LAST_VM_AUTH_SCANNED_DATE")
	case fLastVMAuthDuration:
		err = setInt32(&c.LastVMAuthScannedDuration, &c.vmAuthDuration, v, off, "LAST_VM_AUTH_SCANNED_DURATION")
	case fLastPC:
		err = setTime(&c.LastPCScannedDate, v, off, "LAST_PC_SCANNED_DATE")
	case fTagID:
		var n int64
		var ok bool
		if n, ok, err = parseInt(v, 64, off, "TAG_ID"); ok {
			h.tag.ID = &n
		}
	case fTagName:
		h.tag.Name = h.in.get(v)
	default:
		return false, nil
	}
	return true, err
}

// endTag adds the TAG just read.
func (h *hostState) endTag() {
	h.cols.Tags = append(h.cols.Tags, h.tag)
	h.tag = Tag{}
}

// textSize is what a host's strings weigh in a row group.
func (c *hostCols) textSize() int {
	return len(c.IP) + len(c.IPv6) + len(c.DNS) + len(c.DNSHostname) + len(c.DNSFQDN) +
		len(c.NetBIOS) + len(c.QGHostID) + len(c.CloudResourceID) + len(c.EC2InstanceID) + 16*len(c.Tags)
}
