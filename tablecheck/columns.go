package tablecheck

import (
	"strconv"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/qualysim"
)

// The comparison renders every value as text on both sides: DuckDB's
// reading of a column (sql, a VARCHAR expression; timestamps as epoch
// milliseconds so that no time zone plays a part) and the simulator's
// truth (the render functions). NULL stays NULL (ok false). The converter
// writes an empty string as NULL, so the truth's "" renders as NULL too.

// column is one column of a table and where its truth comes from.
type column struct {
	name string
	sql  string // "" is CAST(name AS VARCHAR)
}

func (c column) expr() string {
	if c.sql != "" {
		return c.sql
	}
	return "CAST(" + c.name + " AS VARCHAR)"
}

func tsCol(name string) column {
	return column{name: name, sql: "CAST(epoch_ms(" + name + ") AS VARCHAR)"}
}

// value is one rendered value; ok false is NULL.
type value struct {
	s  string
	ok bool
}

func (v value) String() string {
	if !v.ok {
		return "NULL"
	}
	return strconv.Quote(v.s)
}

var null = value{}

func str(s string) value {
	if s == "" {
		return null
	}
	return value{s, true}
}

func pstr(s *string) value {
	if s == nil {
		return null
	}
	return str(*s)
}

func num[T int | uint64](n T) value { return value{strconv.FormatInt(int64(n), 10), true} }

func pnum(n *int) value {
	if n == nil {
		return null
	}
	return num(*n)
}

func ts(t time.Time) value {
	if t.IsZero() {
		return null
	}
	return value{strconv.FormatInt(t.UnixMilli(), 10), true}
}

func pts(t *time.Time) value {
	if t == nil {
		return null
	}
	return ts(*t)
}

func boolean(b bool) value { return value{strconv.FormatBool(b), true} }

func pbool(b *bool) value {
	if b == nil {
		return null
	}
	return boolean(*b)
}

func factors(fs []qualysim.QDSFactor) value {
	if fs == nil {
		return null
	}
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.Name + "=" + f.Value
	}
	return value{strings.Join(parts, "|"), true}
}

// hostColumns are the HOST columns both tables have, and their truth.
var hostColumns = []column{
	{name: "host_id"}, {name: "ip"}, {name: "tracking_method"}, {name: "dns"}, {name: "dns_hostname"},
	{name: "dns_domain"}, {name: "dns_fqdn"}, {name: "netbios"}, {name: "os"},
	tsCol("last_scan_datetime"), tsCol("last_vm_scanned_date"), {name: "last_vm_scanned_duration"},
}

func hostValues(h *qualysim.HostFields) []value {
	return []value{
		num(h.ID), str(h.IP), str(h.TrackingMethod), str(h.DNS), str(h.Hostname),
		str(h.Domain), str(h.DNS), pstr(h.NetBIOS), str(h.OS),
		ts(h.LastScan), ts(h.LastVMScanned), num(h.LastVMScannedDuration),
	}
}

// detectionColumns are DETECTION's columns, after the host's.
var detectionColumns = []column{
	{name: "unique_vuln_id"}, {name: "qid"}, {name: "type"}, {name: "severity"}, {name: "port"},
	{name: "protocol"}, {name: "ssl"}, {name: "results"}, {name: "status"},
	tsCol("first_found_datetime"), tsCol("last_found_datetime"),
	{name: "qds"}, {name: "qds_severity"},
	{name: "qds_factors", sql: "array_to_string([f.name || '=' || f.value FOR f IN qds_factors], '|')"},
	{name: "times_found"}, tsCol("last_test_datetime"), tsCol("last_update_datetime"), tsCol("last_fixed_datetime"),
	tsCol("first_reopened_datetime"), tsCol("last_reopened_datetime"), {name: "times_reopened"},
	{name: "is_ignored"}, {name: "is_disabled"}, {name: "affect_running_kernel"}, tsCol("last_processed_datetime"),
}

func detectionValues(d *qualysim.DetectionTruth) []value {
	return []value{
		num(d.UniqueVulnID), num(d.QID), str(d.Type), num(d.Severity), pnum(d.Port),
		pstr(d.Protocol), pbool(d.SSL), pstr(d.Results), str(d.Status),
		ts(d.FirstFound), ts(d.LastFound),
		pnum(d.QDS), str(d.QDSSeverity),
		factors(d.QDSFactors),
		num(d.TimesFound), ts(d.LastTest), ts(d.LastUpdate), pts(d.LastFixed),
		pts(d.FirstReopened), pts(d.LastReopened), pnum(d.TimesReopened),
		boolean(d.IsIgnored), boolean(d.IsDisabled), pbool(d.AffectRunningKernel), ts(d.LastProcessed),
	}
}

// alwaysNull are the columns the simulator never fills (it writes no
// IPV6, ASSET_ID, NETWORK_ID, detection FQDN, tags, cloud or compliance
// fields): a value there came from somewhere else.
var alwaysNull = map[string][]string{
	"detections": {"asset_id", "ipv6", "network_id", "os_cpe", "qg_host_id", "cloud_provider", "cloud_service",
		"cloud_resource_id", "ec2_instance_id", "last_vm_auth_scanned_date", "last_vm_auth_scanned_duration",
		"last_pc_scanned_date", "tags", "fqdn", "instance", "service", "affect_running_service",
		"affect_exploitable_config"},
	"hosts": {"asset_id", "ipv6", "network_id", "os_cpe", "qg_host_id", "cloud_provider", "cloud_service",
		"cloud_resource_id", "ec2_instance_id", "last_vm_auth_scanned_date", "last_vm_auth_scanned_duration",
		"last_pc_scanned_date", "tags", "last_compliance_scan_datetime", "last_scap_scan_datetime", "owner",
		"comments", "asset_group_ids", "asset_risk_score", "trurisk_score"},
}
