// Package qualysim simulates the Qualys VM API (Host List, Host List Detection, KnowledgeBase)
// over a seeded synthetic subscription: it knows the right answer and misbehaves on request.
//
// It is how qfetch is demonstrated, tested end to end and benchmarked
// without a Qualys account. It imitates what qfetch relies on
// (qualys-api.md §7): paths, GET and form POST, Basic auth,
// X-Requested-With, parameters and their errors (1901, 1903, 1905),
// id_min/truncation paging with the WARNING 1980 URL, hosts without a
// matching detection omitted, default status without Fixed, limit headers,
// 409 with 1960/CALLS_TO_FINISH and 1965/SECONDS_TO_WAIT, and the document
// shapes of the recorded samples. Bodies are generated as they stream and
// are byte-identical for identical requests at the same simulated time.
//
// # Dataset
//
// See model.go: host i's ID, processing schedule and detections are pure
// functions of (Seed, i), so 10M hosts cost no memory; IDs ascend with gaps
// and the top ones lie above 2^32. The simulated Clock decides which hosts
// have been processed: a host is re-processed every P_i ≤ ProcessedSpan at
// a fixed phase, and each re-processing re-draws its detection statuses.
// vm_processed_after is inclusive and vm_processed_before exclusive — the
// half-open window qfetch plans with (Qualys does not document which).
//
// # Truth
//
// HostListTruth, Hosts, DetectionTruth and DetectionCounts (and
// GET /__sim/truth) answer from the same selection code the endpoints
// stream from. HostRows and DetectionRows (rows.go) give every field of
// every HOST and DETECTION, typed, from the same values the writers write:
// the truth the analyst tables are checked against. The Host List serves
// details None, Basic and All (All adds QG_HOSTID, FIRST_FOUND_DATE,
// LAST_VM_AUTH_SCANNED_*, COMMENTS, USER_DEF and ASSET_GROUP_IDS); with
// show_tags=1 both APIs add each host's seeded TAGS (tags.go).
//
// # KnowledgeBase
//
// /api/<v>/fo/knowledge_base/vuln/ (GET or POST, action=list; Endpoint KB,
// with its own limits, faults and stats) serves a KB generated from the
// seed (kb.go): every QID a detection uses, visible no later than the
// first detection that uses it, plus unused QIDs up to Config.KBQIDs, and
// Config.KBNewPerDay more published per simulated day. QIDs are modified
// as the Clock moves (LAST_SERVICE_MODIFICATION_DATETIME and content);
// "late-visible" QIDs — half of those hosts added after Start
// (NewHostsPerDay) bring, a quarter of the published ones — carry a
// modification time backdated before they become visible, so an
// incremental pass misses them (KBLate lists them). Parameters: details
// (None → ID_SET with ID_RANGE for consecutive QIDs; Basic, the default,
// and All → VULN_LIST, All adding DIAGNOSIS, CONSEQUENCE, SOLUTION,
// CORRELATION and the CVSS vectors), ids (QIDs and ranges), id_min,
// id_max, last_modified_after/_before and published_after/_before
// (after inclusive, before exclusive), is_patchable, discovery_method,
// discovery_auth_types, echo_request (ignored) and show_disabled_flag,
// show_qid_change_log, show_supported_modules_info, show_pci_reasons;
// anything else is refused (1901), a bad ids value with the recorded 1905.
// Answers are sorted by QID, unknown QIDs left out, no match a RESPONSE
// with DATETIME only; Config.KBKeepAlive adds the recorded keep-alive
// comments. Truth: KBTruth, KBSelect, KBQIDs, KBChanged, KBLate,
// KBVisibleFrom; Stats count the VULNs served.
//
// # Faults
//
// See Faults and FaultKind: 500, 503, an error document with 200, GENERIC_RETURN
// 999, a 503 with the 1999 maintenance document, a reset, a stall or a cut
// mid-body, a slow first byte, a bandwidth cap, and the fleet-wide switches
// (account expired, logins rejected). Each has a seeded probability;
// ForceFault queues the next N; Outage holds one on an API for a real time.
// Faults.StallLaterPages stalls the later pages of big batches only, the
// answer a batch too big to page through gets.
// Config.NoAbout makes /msp/about.php a 404, as behind an API-only gateway.
//
// # Control
//
// /__sim/stats, /__sim/clock, /__sim/faults, /__sim/account, /__sim/config,
// /__sim/truth: see control.go.
//
// # Trying it
//
//	$ qfetch sim --hosts 100000 --addr 127.0.0.1:8080 --seed 1
//	QFETCH_QUALYS_URL=http://127.0.0.1:8080
//	QFETCH_QUALYS_USERNAME=qsim_user
//	QFETCH_QUALYS_PASSWORD=…
//	$ curl -u "qsim_user:$PASSWORD" -H 'X-Requested-With: curl' \
//	    'http://127.0.0.1:8080/api/2.0/fo/asset/host/?action=list&details=None&truncation_limit=5'
//	$ curl -u "qsim_user:$PASSWORD" -H 'X-Requested-With: curl' \
//	    -d 'action=list&show_reopened_info=1&truncation_limit=2&ids=10000000-10000100' \
//	    http://127.0.0.1:8080/api/2.0/fo/asset/host/vm/detection/
//	$ curl -u "qsim_user:$PASSWORD" -H 'X-Requested-With: curl' \
//	    -d 'action=list&details=All&last_modified_after=2025-12-31' \
//	    http://127.0.0.1:8080/api/2.0/fo/knowledge_base/vuln/
//	$ curl 'http://127.0.0.1:8080/__sim/truth?kind=detection&vm_processed_after=2025-12-31&count_only=1'
//	$ curl 'http://127.0.0.1:8080/__sim/truth?kind=kb&last_modified_after=2025-12-31&count_only=1'
//	$ curl -X POST 'http://127.0.0.1:8080/__sim/clock?advance=24h'
//
// The KnowledgeBase's size and growth are qfetch sim's --kb-qids,
// --kb-new-per-day and --kb-keep-alive (Config.KBQIDs, KBNewPerDay,
// KBKeepAlive); hosts added (--new-hosts-per-day) bring late-visible QIDs.
package qualysim
