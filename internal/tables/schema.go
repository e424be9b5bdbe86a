package tables

import (
	"io"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
)

// The columns of the three tables, as Go structs parquet-go reads the
// schema from (docs/tables.md describes each column). Conventions:
//
//   - strings and timestamps are optional and NULL when Qualys omits the
//     element or sends it empty (their zero value is written as NULL);
//   - numbers and booleans, whose zero is a value, are pointers: nil is
//     NULL. The pointers point into the row's own unexported fields, so a
//     row costs no allocation (link re-points them after a copy);
//   - timestamps are TIMESTAMP(MILLIS, UTC): Qualys sends whole seconds.

// MetaSchemaVersion is the key of the files' key/value metadata that holds
// SchemaVersion; MetaTable names the table.
// MetaQIDs, in a detections file, lists the distinct QIDs of its rows in
// the hostids form ("6,45017-45019"; "" for none).
const (
	MetaSchemaVersion = "qfetch.schema_version"
	MetaTable         = "qfetch.table"
	MetaQIDs          = "qfetch.qids"
)

// defaultRowGroupRows is Options.RowGroupRows' default (see docs/tables.md
// for the measurement behind it).
const defaultRowGroupRows = 64 << 10

// maxRowGroupBytes flushes a row group early when its text is large (long
// RESULTS), so that memory stays bounded whatever the rows hold.
const maxRowGroupBytes = 64 << 20

// sourceCols say where a row comes from.
type sourceCols struct {
	Run           string `parquet:"run,dict"`
	SourceKey     string `parquet:"source_key,dict"`
	SourceOffset  int64  `parquet:"source_offset"`
	SchemaVersion int32  `parquet:"schema_version"`
}

// Tag is one element of the tags column: HOST/TAGS/TAG.
type Tag struct {
	ID   *int64 `parquet:"id,optional"`
	Name string `parquet:"name,optional"`
}

// QDSFactor is one element of the qds_factors column:
// DETECTION/QDS_FACTORS/QDS_FACTOR.
type QDSFactor struct {
	Name  string `parquet:"name,optional,dict"`
	Value string `parquet:"value,optional"`
}

// hostCols are the HOST columns both tables have.
type hostCols struct {
	HostID                    int64     `parquet:"host_id"`
	AssetID                   *int64    `parquet:"asset_id,optional"`
	IP                        string    `parquet:"ip,optional"`
	IPv6                      string    `parquet:"ipv6,optional"`
	TrackingMethod            string    `parquet:"tracking_method,optional,dict"`
	NetworkID                 *int64    `parquet:"network_id,optional"`
	OS                        string    `parquet:"os,optional,dict"`
	OSCPE                     string    `parquet:"os_cpe,optional,dict"`
	DNS                       string    `parquet:"dns,optional"`
	DNSHostname               string    `parquet:"dns_hostname,optional"`
	DNSDomain                 string    `parquet:"dns_domain,optional,dict"`
	DNSFQDN                   string    `parquet:"dns_fqdn,optional"`
	NetBIOS                   string    `parquet:"netbios,optional"`
	QGHostID                  string    `parquet:"qg_host_id,optional"`
	CloudProvider             string    `parquet:"cloud_provider,optional,dict"`
	CloudService              string    `parquet:"cloud_service,optional,dict"`
	CloudResourceID           string    `parquet:"cloud_resource_id,optional"`
	EC2InstanceID             string    `parquet:"ec2_instance_id,optional"`
	LastScanDatetime          time.Time `parquet:"last_scan_datetime,optional,timestamp(millisecond)"`
	LastVMScannedDate         time.Time `parquet:"last_vm_scanned_date,optional,timestamp(millisecond)"`
	LastVMScannedDuration     *int32    `parquet:"last_vm_scanned_duration,optional"`
	LastVMAuthScannedDate     time.Time `parquet:"last_vm_auth_scanned_date,optional,timestamp(millisecond)"`
	LastVMAuthScannedDuration *int32    `parquet:"last_vm_auth_scanned_duration,optional"`
	LastPCScannedDate         time.Time `parquet:"last_pc_scanned_date,optional,timestamp(millisecond)"`
	Tags                      []Tag     `parquet:"tags,optional,list"`

	assetID, networkID         int64
	vmDuration, vmAuthDuration int32
}

// link points h's number columns at h's own storage; called after h is
// copied, so that the copy does not share the original's.
func (h *hostCols) link() {
	relink(&h.AssetID, &h.assetID)
	relink(&h.NetworkID, &h.networkID)
	relink(&h.LastVMScannedDuration, &h.vmDuration)
	relink(&h.LastVMAuthScannedDuration, &h.vmAuthDuration)
}

func relink[T any](p **T, storage *T) {
	if *p != nil {
		*p = storage
	}
}

// detectionCols are DETECTION's columns.
type detectionCols struct {
	UniqueVulnID            *int64      `parquet:"unique_vuln_id,optional"`
	QID                     int32       `parquet:"qid"`
	Type                    string      `parquet:"type,optional,dict"`
	Severity                *int32      `parquet:"severity,optional"`
	Port                    *int32      `parquet:"port,optional"`
	Protocol                string      `parquet:"protocol,optional,dict"`
	FQDN                    string      `parquet:"fqdn,optional"`
	SSL                     *bool       `parquet:"ssl,optional"`
	Instance                string      `parquet:"instance,optional"`
	Results                 string      `parquet:"results,optional"`
	Status                  string      `parquet:"status,optional,dict"`
	FirstFoundDatetime      time.Time   `parquet:"first_found_datetime,optional,timestamp(millisecond)"`
	LastFoundDatetime       time.Time   `parquet:"last_found_datetime,optional,timestamp(millisecond)"`
	QDS                     *int32      `parquet:"qds,optional"`
	QDSSeverity             string      `parquet:"qds_severity,optional,dict"`
	QDSFactors              []QDSFactor `parquet:"qds_factors,optional,list"`
	TimesFound              *int32      `parquet:"times_found,optional"`
	LastTestDatetime        time.Time   `parquet:"last_test_datetime,optional,timestamp(millisecond)"`
	LastUpdateDatetime      time.Time   `parquet:"last_update_datetime,optional,timestamp(millisecond)"`
	LastFixedDatetime       time.Time   `parquet:"last_fixed_datetime,optional,timestamp(millisecond)"`
	FirstReopenedDatetime   time.Time   `parquet:"first_reopened_datetime,optional,timestamp(millisecond)"`
	LastReopenedDatetime    time.Time   `parquet:"last_reopened_datetime,optional,timestamp(millisecond)"`
	TimesReopened           *int32      `parquet:"times_reopened,optional"`
	Service                 string      `parquet:"service,optional"`
	IsIgnored               *bool       `parquet:"is_ignored,optional"`
	IsDisabled              *bool       `parquet:"is_disabled,optional"`
	AffectRunningKernel     *bool       `parquet:"affect_running_kernel,optional"`
	AffectRunningService    *bool       `parquet:"affect_running_service,optional"`
	AffectExploitableConfig *bool       `parquet:"affect_exploitable_config,optional"`
	LastProcessedDatetime   time.Time   `parquet:"last_processed_datetime,optional,timestamp(millisecond)"`

	uniqueVulnID                                     int64
	severity, port, qds, timesFound, timesReopened   int32
	ssl, ignored, disabled, kernel, service, exploit bool
}

// DetectionRow is one row of the detections table: a host × detection.
type DetectionRow struct {
	sourceCols
	hostCols
	detectionCols
}

// hostExtraCols are the Host List HOST columns the detection API does not
// send.
type hostExtraCols struct {
	LastComplianceScanDatetime time.Time `parquet:"last_compliance_scan_datetime,optional,timestamp(millisecond)"`
	LastSCAPScanDatetime       time.Time `parquet:"last_scap_scan_datetime,optional,timestamp(millisecond)"`
	Owner                      string    `parquet:"owner,optional"`
	Comments                   string    `parquet:"comments,optional"`
	AssetGroupIDs              []int64   `parquet:"asset_group_ids,optional,list"`
	AssetRiskScore             *int32    `parquet:"asset_risk_score,optional"`
	TruRiskScore               *int32    `parquet:"trurisk_score,optional"`

	assetRisk, truRisk int32
}

func (h *hostExtraCols) link() {
	relink(&h.AssetRiskScore, &h.assetRisk)
	relink(&h.TruRiskScore, &h.truRisk)
}

// HostRow is one row of the hosts table: a host of the run's window.
type HostRow struct {
	sourceCols
	hostCols
	hostExtraCols
}

// runCols is the runs table's one row per complete run. Its creation day
// is the partition column run_date, so the file names it created.
type runCols struct {
	Run           string    `parquet:"run"`
	SchemaVersion int32     `parquet:"schema_version"`
	Created       time.Time `parquet:"created,timestamp(millisecond)"`
	WindowAfter   time.Time `parquet:"window_after,optional,timestamp(millisecond)"`
	WindowBefore  time.Time `parquet:"window_before,timestamp(millisecond)"`
	Completed     time.Time `parquet:"completed,timestamp(millisecond)"`
	Batches       int32     `parquet:"batches"`
	HostListPages int32     `parquet:"host_list_pages"`
	DetectionRows int64     `parquet:"detection_rows"`
	HostRows      int64     `parquet:"host_rows"`
	// Added in schema 1 (additive: older rows read as NULL).
	Kind   string `parquet:"kind,optional"`
	KBRows int64  `parquet:"kb_rows"`
}

// writerOptions are every table's: zstd, data pages every reader knows, qfetch's own created_by (the
// library's default names the build, which would make two builds write
// different bytes), the schema version in the key/value metadata.
func writerOptions(table string) []parquet.WriterOption {
	return []parquet.WriterOption{
		parquet.Compression(zstdCodec),
		&parquet.WriterConfig{CreatedBy: "qfetch tables, schema " + strconv.Itoa(SchemaVersion)},
		parquet.KeyValueMetadata(MetaSchemaVersion, strconv.Itoa(SchemaVersion)),
		parquet.KeyValueMetadata(MetaTable, table),
		parquet.MaxRowsPerRowGroup(1 << 40), // we flush ourselves
		// The most widely read profile (parquet-mr's default): v1 data
		// pages, PLAIN or dictionary values. ZSTD does the rest.
		parquet.DataPageVersion(1),
		parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.Plain),
	}
}

func newWriter[T any](w io.Writer, table string) *parquet.GenericWriter[T] {
	return parquet.NewGenericWriter[T](w, writerOptions(table)...)
}

func rowGroupRows(opt Options) int {
	if opt.RowGroupRows > 0 {
		return opt.RowGroupRows
	}
	return defaultRowGroupRows
}
